// Reward fine-tuning's mathematics (FORMULAS.md section 6; handbook 3.3): the denoising chain as a
// policy (each stochastic DDIM step a Gaussian, FORMULAS (48-51)), DDPO's PPO-clip surrogate and
// its diagnostics, per-class reward statistics for advantages, and DRWR's weights. Pure tensor
// functions; the methods (experiments/reward/) call the networks.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <deque>
#include <map>
#include <vector>

#include "objectives/sampling/ddim.h"
#include "objectives/schedule.h"

namespace unidiff::objectives {

// The policy's step is the per-sample DDIM step of objectives/sampling/ddim.h (ddim_gaussian).

/// log N(x_next; mean, std^2 I) per sample (FORMULAS (51)), float64 [B]; std > 0 per sample [B].
torch::Tensor gaussian_log_prob(const torch::Tensor& x_next, const torch::Tensor& mean, const torch::Tensor& std);

/// DDPO_IS (PPO-clip): mean of max(-A rho, -A clip(rho, 1 - c, 1 + c)), rho = exp(logp - logp_old).
/// With rho = 1 (the first pass) its gradient is the plain policy gradient -mean(A grad logp).
torch::Tensor ppo_clip_loss(const torch::Tensor& logp, const torch::Tensor& logp_old, const torch::Tensor& advantage,
                            double clip);
/// 0.5 mean (logp - logp_old)^2 (the approximate KL ddpo-pytorch logs) and the fraction of entries
/// whose ratio left [1 - c, 1 + c].
torch::Tensor approx_kl(const torch::Tensor& logp, const torch::Tensor& logp_old);
torch::Tensor clip_fraction(const torch::Tensor& logp, const torch::Tensor& logp_old, double clip);

/// DRWR's weight min(exp(r / beta), max_weight) (reward-weighted regression, temperature beta).
torch::Tensor rwr_weights(const torch::Tensor& reward, double beta, double max_weight);

/// DDPO's per-prompt statistics for conditional models (one prompt = one class): a class's last
/// `buffer` rewards; a class with fewer than `min_count` normalises by the whole batch instead.
/// Advantages (r - mean) / (std + 1e-6) after adding the batch. Unconditional (no labels): the
/// batch's own mean and std. Rewards that are not finite are left out (their advantage is 0).
class RewardStats {
 public:
  RewardStats(int64_t buffer, int64_t min_count) : buffer_(buffer), min_count_(min_count) {}
  /// rewards float64 [N], labels int64 [N] or undefined. Adds the batch, returns the advantages.
  torch::Tensor update(const torch::Tensor& rewards, const torch::Tensor& labels);
  /// The advantages the last update returned, computed again from the current buffers without
  /// adding (a run resumed within the epoch that made them).
  torch::Tensor advantages(const torch::Tensor& rewards, const torch::Tensor& labels) const;
  /// Flat state for checkpoints: (class, reward) pairs in buffer order.
  std::pair<std::vector<int64_t>, std::vector<double>> state() const;
  void set_state(const std::vector<int64_t>& classes, const std::vector<double>& rewards);

 private:
  int64_t buffer_, min_count_;
  std::map<int64_t, std::deque<double>> by_class_;
};

}  // namespace unidiff::objectives
