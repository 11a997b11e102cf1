// dist/flat_adamw.h.
#include "dist/flat_adamw.h"

#include <cmath>

#include "core/error.h"

namespace unidiff::dist {

FlatAdamW::FlatAdamW(Reducer& reducer, AdamWConfig config) : reducer_(reducer), config_(config) {
  for (int b = 0; b < reducer_.num_buckets(); ++b) {
    exp_avg_.push_back(torch::zeros_like(reducer_.param_shard(b)));
    exp_avg_sq_.push_back(torch::zeros_like(reducer_.param_shard(b)));
  }
}

torch::Tensor FlatAdamW::clip_grad_norm(double max_norm) {
  UD_CHECK_INPUT(max_norm > 0, "the gradient clipping norm must be positive, got ", max_norm);
  torch::NoGradGuard no_grad;
  torch::Tensor sq = torch::zeros({1}, reducer_.param_shard(0).options().dtype(torch::kFloat64));
  for (int b = 0; b < reducer_.num_buckets(); ++b) {
    sq += reducer_.grad_shard(b).to(torch::kFloat64).pow(2).sum();
  }
  if (reducer_.sharded()) reducer_.comm().all_reduce(sq);
  const torch::Tensor norm = sq.sqrt();
  const torch::Tensor coef = (max_norm / (norm + 1e-6)).clamp_max(1.0).to(torch::kFloat32);
  for (int b = 0; b < reducer_.num_buckets(); ++b) reducer_.grad_shard(b).mul_(coef);
  return norm.squeeze(0);
}

void FlatAdamW::step(double lr) {
  torch::NoGradGuard no_grad;
  ++steps_;
  const double bc1 = 1.0 - std::pow(config_.beta1, static_cast<double>(steps_));
  const double bc2 = 1.0 - std::pow(config_.beta2, static_cast<double>(steps_));
  for (int b = 0; b < reducer_.num_buckets(); ++b) {
    torch::Tensor p = reducer_.param_shard(b);
    const torch::Tensor g = reducer_.grad_shard(b);
    p.mul_(1.0 - lr * config_.weight_decay);
    exp_avg_[b].mul_(config_.beta1).add_(g, 1.0 - config_.beta1);
    exp_avg_sq_[b].mul_(config_.beta2).addcmul_(g, g, 1.0 - config_.beta2);
    const torch::Tensor denom = (exp_avg_sq_[b].sqrt() / std::sqrt(bc2)).add_(config_.eps);
    p.addcdiv_(exp_avg_[b], denom, -lr / bc1);
  }
  reducer_.all_gather_params();
}

}  // namespace unidiff::dist
