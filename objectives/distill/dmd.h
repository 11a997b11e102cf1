// Distribution matching (FORMULAS.md section 5; handbook 3.2.2-3.2.5): the generator gradients of
// DMD/DMD2, VSD and SDS, the GAN losses of DMD2 and ADD, and a few-step generator's times and
// backward simulation. Pure tensor functions; the methods (experiments/distill/) call the networks.
//
// Conventions. x is the generator's clean sample; x_t = alpha_t x + sigma_t eps its diffused copy
// (DDPM tables, t a code index); x0_real and x0_fake are the real (teacher) and fake (trained on
// generator samples) denoisers' estimates E[x0 | x_t]. The scores are s = (alpha_t x0 - x_t) /
// sigma_t^2, so s_fake - s_real = alpha_t (x0_fake - x0_real) / sigma_t^2, and
//   d/dtheta KL(p_fake,t || p_real,t) = E[(s_fake - s_real)(x_t) dx_t/dtheta]
//                                     = E[(alpha_t^2 / sigma_t^2) (x0_fake - x0_real) dx/dtheta].
// A generator direction g (in x) is applied through the loss 0.5 ||x - stopgrad(x - g)||^2, whose
// gradient in x is g: g = c_t (x0_fake - x0_real) with c_t = alpha_t^2 / sigma_t^2 is the exact KL
// gradient; DMD takes c = 1 / mean_j |x - x0_real|_j (its normalised weight), VSD the eps
// difference eps_real - eps_fake = (alpha_t / sigma_t) (x0_fake - x0_real) (weight w(t) = 1), SDS
// eps_real - eps with eps the injected noise in place of the fake score.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "objectives/sampling/ddim.h"
#include "objectives/schedule.h"

namespace unidiff::objectives {

/// DMD's weight: 1 / mean over the elements of |x - x0_real|, per sample [B] (detached).
torch::Tensor dmd_weight(const torch::Tensor& x, const torch::Tensor& x0_real);

/// g = c (x0_fake - x0_real), c per sample [B] broadcast against x [B, ...] (detached).
torch::Tensor matching_direction(const torch::Tensor& x0_fake, const torch::Tensor& x0_real, const torch::Tensor& c);

/// The loss whose gradient in x is g / numel(x): 0.5 mean ||x - stopgrad(x - g)||^2.
torch::Tensor direction_loss(const torch::Tensor& x, const torch::Tensor& g);

/// Non-saturating GAN (DMD2): the discriminator's softplus(-D(real)) + softplus(D(fake)) and the
/// generator's softplus(-D(fake)), means over the batch; D are logits [B].
torch::Tensor gan_discriminator_loss(const torch::Tensor& real_logits, const torch::Tensor& fake_logits);
torch::Tensor gan_generator_loss(const torch::Tensor& fake_logits);
/// Hinge GAN (ADD): relu(1 - D(real)) + relu(1 + D(fake)) and -D(fake), means over the batch.
torch::Tensor hinge_discriminator_loss(const torch::Tensor& real_logits, const torch::Tensor& fake_logits);
torch::Tensor hinge_generator_loss(const torch::Tensor& fake_logits);

/// A few-step generator's N times: the trailing subsequence of the T code indices (999, 749, 499,
/// 249 for N = 4 of T = 1000; 999 for N = 1), the times `lcm` sampling visits.
std::vector<int64_t> generator_times(int64_t num_steps, int64_t n);

/// A generator's prediction of x0 at (x, t): t float [B] code indices.
using GeneratorFn = std::function<torch::Tensor(const torch::Tensor& x, const torch::Tensor& t)>;

/// Backward simulation (DMD2): sample b trains on the state its own N-step sampler is in before its
/// step k_b: s_0 = x_T; s_{i+1} = alpha(t_{i+1}) G(s_i, t_i) + sigma(t_{i+1}) noise(i), the
/// multistep consistency sampler's re-noising (objectives/sampling/ode.h). Runs without gradients.
struct GeneratorInput {
  torch::Tensor x;  ///< [B, ...] the states
  torch::Tensor t;  ///< float [B] their times (code indices)
};
GeneratorInput backward_simulation(const GeneratorFn& generator, const Schedule& schedule, const torch::Tensor& x_T,
                                   const std::vector<int64_t>& times, const torch::Tensor& k, const NoiseFn& noise);

}  // namespace unidiff::objectives
