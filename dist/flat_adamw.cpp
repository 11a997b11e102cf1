// dist/flat_adamw.h.
#include "dist/flat_adamw.h"

#include <ATen/ops/_foreach_add.h>
#include <ATen/ops/_fused_adamw.h>

#include "core/error.h"

namespace unidiff::dist {

FlatAdamW::FlatAdamW(Reducer& reducer, AdamWConfig config) : reducer_(reducer), config_(config) {
  for (int b = 0; b < reducer_.num_buckets(); ++b) {
    exp_avg_.push_back(torch::zeros_like(reducer_.param_shard(b)));
    exp_avg_sq_.push_back(torch::zeros_like(reducer_.param_shard(b)));
    step_count_.push_back(torch::zeros({}, reducer_.param_shard(b).options().dtype(torch::kFloat32)));
  }
  lr_ = torch::zeros({}, reducer_.param_shard(0).options().dtype(torch::kFloat32));
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

torch::Tensor FlatAdamW::grad_norm() {
  torch::NoGradGuard no_grad;
  torch::Tensor sq = torch::zeros({1}, reducer_.param_shard(0).options().dtype(torch::kFloat64));
  for (int b = 0; b < reducer_.num_buckets(); ++b) {
    sq += reducer_.grad_shard(b).to(torch::kFloat64).pow(2).sum();
  }
  if (reducer_.sharded()) reducer_.comm().all_reduce(sq);
  return sq.sqrt().squeeze(0);
}

void FlatAdamW::step(double lr) {
  torch::NoGradGuard no_grad;
  lr_.fill_(lr);
  count_step();
  update(lr_);
}

void FlatAdamW::update(const torch::Tensor& lr, const torch::Tensor& found_inf) {
  torch::NoGradGuard no_grad;
  // One fused kernel over every bucket (LibTorch's _fused_adamw_, CPU and CUDA), which reads the
  // step count from a tensor per bucket; we advance those on the device.
  std::vector<torch::Tensor> params, grads;
  for (int b = 0; b < reducer_.num_buckets(); ++b) {
    params.push_back(reducer_.param_shard(b));
    grads.push_back(reducer_.grad_shard(b));
  }
  at::_foreach_add_(step_count_, 1);
  at::_fused_adamw_(params, grads, exp_avg_, exp_avg_sq_, /*max_exp_avg_sqs=*/{}, step_count_, lr,
                    config_.beta1, config_.beta2, config_.weight_decay, config_.eps, /*amsgrad=*/false,
                    /*maximize=*/false, /*grad_scale=*/std::nullopt,
                    found_inf.defined() ? std::optional<torch::Tensor>(found_inf) : std::nullopt);
  if (found_inf.defined()) {
    for (auto& count : step_count_) count.sub_(found_inf.reshape({}));  // a skipped step is no step
  }
  reducer_.all_gather_params();
}

int64_t FlatAdamW::updates_applied() const {
  if (step_count_.empty()) return steps_;
  return static_cast<int64_t>(step_count_[0].item<double>());
}

void FlatAdamW::set_steps(int64_t steps) {
  steps_ = steps;
  torch::NoGradGuard no_grad;
  for (auto& count : step_count_) count.fill_(static_cast<double>(steps));
}

}  // namespace unidiff::dist
