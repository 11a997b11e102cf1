// AdamW over a reducer's flat buckets, with the update of torch::optim::AdamW (decoupled weight
// decay, bias-corrected moments, eps added to the corrected root), computed by LibTorch's fused
// AdamW kernel: one kernel for all buckets instead of several per bucket. Without ZeRO-1 every rank
// updates whole buckets; with it (Reducer::sharded()) each rank keeps the moments of, and updates,
// only its slice of each bucket, then the reducer all-gathers the parameters: optimizer memory per
// rank falls by the world size. Gradient clipping uses the global norm (a sum over shards when
// sharded). No host synchronisation: learning rate and clipping coefficient enter as numbers or
// device tensors.
#pragma once

#include <torch/types.h>

#include <vector>

#include "dist/reducer.h"

namespace unidiff::dist {

struct AdamWConfig {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
};

class FlatAdamW {
 public:
  FlatAdamW(Reducer& reducer, AdamWConfig config);

  /// Scales gradients so their global 2-norm is at most `max_norm` (as clip_grad_norm_:
  /// coefficient min(1, max_norm / (norm + 1e-6))). Returns the norm before clipping (a 0-dim
  /// tensor on the parameters' device; reading it syncs). Collective when sharded.
  torch::Tensor clip_grad_norm(double max_norm);
  /// The global 2-norm of the gradients without clipping (a 0-dim tensor; collective when sharded).
  torch::Tensor grad_norm();
  /// One AdamW step with learning rate `lr` on this rank's shards; all-gathers when sharded.
  /// count_step() then update() with `lr` in a device scalar.
  void step(double lr);
  /// Host half of a step: counts it (steps()).
  void count_step() { ++steps_; }
  /// Device half: advances the per-bucket step tensors and runs the fused kernel with the
  /// learning rate read from `lr` (float32 0-dim on the parameters' device): kernels only, so a
  /// captured CUDA graph can replay it with a new rate written into the same tensor. With
  /// `found_inf` (float32 [1] on the device) at 1 the kernel leaves parameters and moments alone
  /// and the step counts go back: a skipped step, decided on the device without a host wait.
  void update(const torch::Tensor& lr, const torch::Tensor& found_inf = {});

  /// Steps counted on the host (count_step), skipped ones included; no device read.
  int64_t steps() const { return steps_; }
  /// The updates applied: the device's step count, which skipped steps do not advance (the
  /// bias correction's t; a host wait). A checkpoint must store this, not steps(): a run resumed
  /// after a skipped step otherwise corrects its moments with a t one too large and leaves the
  /// uninterrupted run's path (cli: a spiked run resumed bit for bit).
  int64_t updates_applied() const;
  /// Sets both counts (a resumed run: the checkpoint's updates_applied()).
  void set_steps(int64_t steps);
  /// Moments of bucket b (this rank's shard, Reducer::shard_range), for checkpoints.
  const std::vector<torch::Tensor>& exp_avg() const { return exp_avg_; }
  const std::vector<torch::Tensor>& exp_avg_sq() const { return exp_avg_sq_; }
  std::vector<torch::Tensor>& exp_avg() { return exp_avg_; }
  std::vector<torch::Tensor>& exp_avg_sq() { return exp_avg_sq_; }

 private:
  Reducer& reducer_;
  AdamWConfig config_;
  int64_t steps_ = 0;
  std::vector<torch::Tensor> exp_avg_, exp_avg_sq_;
  std::vector<torch::Tensor> step_count_;  ///< steps_ as a float32 tensor per bucket (the fused kernel reads these)
  torch::Tensor lr_;                       ///< step(double)'s learning rate on the device
};

}  // namespace unidiff::dist
