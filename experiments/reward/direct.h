// The reward methods that follow the reward's gradient (handbook 3.3.1, FORMULAS.md section 6):
// ReFL (--method=refl), DRaFT-K (--method=draft) and Q-score matching (--method=qsm). Their losses
// as functions of a network (tested against finite differences); the methods in direct.cpp.
#pragma once

#include <torch/types.h>

#include <functional>
#include <vector>

#include "experiments/distill/teacher.h"
#include "experiments/reward/rewards.h"
#include "models/network.h"
#include "objectives/sampling/ddim.h"

namespace unidiff::experiments {

/// The DDIM chain's times for `steps` trailing steps of the model's T (code indices).
std::vector<int64_t> chain_times(const Teacher& model, int64_t steps);

/// DDIM steps [from, to) of the chain `times` from state x (eta, noise(i) for step i), the policy
/// network `net` (labels or undefined); with gradients when they are on. Returns the state after
/// them (after the last step: the clean sample).
torch::Tensor chain(models::Network& net, const Teacher& model, torch::Tensor x, const std::vector<int64_t>& times,
                    int64_t from, int64_t to, double eta, const objectives::NoiseFn& noise, const torch::Tensor& labels);

/// ReFL: one network call at the chain's state x (time t, code index) with gradients, x0 by Tweedie
/// (FORMULAS (7)), loss -lambda mean r(x0). Here and in DRaFT the mean is over the finite rewards
/// (finite_reward_mean; `index`: the samples' global indices, for its report).
torch::Tensor refl_loss(models::Network& net, const Teacher& model, const torch::Tensor& x, int64_t t,
                        const torch::Tensor& labels, const Reward& reward, double lambda,
                        const torch::Tensor& index = {});

/// DRaFT-K: the whole chain from x_T, gradients through its last K steps only; loss -lambda mean r(x0).
torch::Tensor draft_loss(models::Network& net, const Teacher& model, const torch::Tensor& x_T,
                         const std::vector<int64_t>& times, int64_t k, double eta, const objectives::NoiseFn& noise,
                         const torch::Tensor& labels, const Reward& reward, double lambda,
                         const torch::Tensor& index = {});

/// DRaFT-K with activation checkpointing: the gradients of draft_loss(...).backward() while holding
/// one step's activations at a time. The last K steps run without gradients keeping only their
/// inputs; the reward's gradient at x0 is then carried back step by step, each step recomputed with
/// gradients and backpropagated on its own (parameter gradients accumulate). `before_backward(last)`
/// runs before each backward pass (last: the final one; a data-parallel run reduces then). Returns
/// the loss, detached.
torch::Tensor draft_backward_checkpointed(models::Network& net, const Teacher& model, const torch::Tensor& x_T,
                                          const std::vector<int64_t>& times, int64_t k, double eta,
                                          const objectives::NoiseFn& noise, const torch::Tensor& labels,
                                          const Reward& reward, double lambda, const torch::Tensor& index,
                                          const std::function<void(bool last)>& before_backward);

/// Q-score matching at x_t (time t per sample): || eps_theta(x_t) + sigma_t alpha grad_x r(x_t) ||^2
/// averaged, the score -eps / sigma matched to alpha grad r in eps units (sigma^2 times the score's
/// error: no weight blows up as sigma -> 0). A reward gradient that is not finite counts as 0.
torch::Tensor qsm_loss(models::Network& net, const Teacher& model, const torch::Tensor& x_t, const torch::Tensor& t,
                       const torch::Tensor& labels, const Reward& reward, double alpha);

}  // namespace unidiff::experiments
