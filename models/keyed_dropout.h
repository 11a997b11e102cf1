// Keyed dropout: masks drawn from the counter-based generator (core/rng.h) keyed by
// (seed, kDropout, step, layer, global sample index) instead of LibTorch's stateful generator, so a
// training step gives the same masks on any number of ranks, on CPU and CUDA, and after a resume.
// The training loop opens a DropoutKeyScope around a step's forward passes; layers call
// keyed_dropout with their own layer number. Outside a scope (or in eval mode) it falls back to
// LibTorch's dropout (training) or the identity (eval).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <utility>

namespace unidiff::models {

struct DropoutKey {
  DropoutKey(uint32_t seed, uint64_t step, torch::Tensor index, torch::Tensor step_counter = {})
      : seed(seed), step(step), index(std::move(index)), step_counter(std::move(step_counter)) {}

  uint32_t seed = 0;      ///< the run's key
  uint64_t step = 0;      ///< optimizer step
  torch::Tensor index;    ///< global sample indices of the batch rows, int64 [B]
  /// The step as a 0-dim int64 tensor on the device (a captured CUDA graph's counter), or
  /// undefined: `step` is used.
  torch::Tensor step_counter;
};

/// Makes `key` the current thread's dropout key until destroyed (scopes nest).
class DropoutKeyScope {
 public:
  explicit DropoutKeyScope(DropoutKey key);
  ~DropoutKeyScope();
  DropoutKeyScope(const DropoutKeyScope&) = delete;
  DropoutKeyScope& operator=(const DropoutKeyScope&) = delete;

 private:
  DropoutKey key_;
  const DropoutKey* previous_;
};

/// x [B, ...] with each element zeroed with probability p and the rest scaled by 1 / (1 - p)
/// (training only). Under a DropoutKeyScope the mask of row b is a pure function of (seed, step,
/// layer, index[b]); `layer` tells a network's dropout layers apart (< 2^16).
torch::Tensor keyed_dropout(const torch::Tensor& x, double p, bool training, int64_t layer);

}  // namespace unidiff::models
