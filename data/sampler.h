// Deterministic sharded sampling. The global order is a pure function of (seed, epoch): a keyed
// permutation of all indices per epoch, cut into global batches of B; the last partial global
// batch of an epoch is dropped. Rank r of W takes positions r, r + W, r + 2W, ... of each global
// batch, so the union of all ranks' batch k is the same whatever W is. The position (samples
// consumed, counted globally) is the only state: save it, restore it, at any world size.
#pragma once

#include <torch/types.h>

#include <cstdint>

namespace unidiff::data {

class ShardedSampler {
 public:
  /// Throws InputError when the global batch is larger than the dataset or not divisible by W.
  /// `stream` tells apart the orders of several data streams of one run (0: the first; its order
  /// is the plain keyed permutation).
  ShardedSampler(int64_t dataset_size, int64_t global_batch, int world_size, int rank,
                 uint32_t seed, uint8_t stream = 0);

  /// Global dataset indices of this rank's share of the next global batch: int64 [B / W].
  torch::Tensor next();

  int64_t position() const { return position_; }
  /// Restores a position saved by `position()` (of any world size with the same global batch).
  void set_position(int64_t position);
  int64_t epoch() const { return position_ / epoch_samples(); }
  int64_t batches_per_epoch() const { return dataset_size_ / global_batch_; }
  int64_t local_batch() const { return global_batch_ / world_size_; }
  int64_t global_batch() const { return global_batch_; }

 private:
  int64_t epoch_samples() const { return batches_per_epoch() * global_batch_; }
  const torch::Tensor& order(int64_t epoch);

  int64_t dataset_size_;
  int64_t global_batch_;
  int world_size_;
  int rank_;
  uint32_t seed_;
  uint8_t stream_;
  int64_t position_ = 0;
  int64_t cached_epoch_ = -1;
  torch::Tensor cached_order_;
};

}  // namespace unidiff::data
