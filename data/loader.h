// Prefetching batch loader: a background thread takes this rank's indices from the sharded
// sampler, gathers the samples as stored (uint8 images), applies keyed augmentation, pins host
// memory (on CUDA) and queues up to `prefetch` batches; next() pops one, copies it to the device
// without blocking the host and decodes it there (uint8 -> float32 in [-1, 1]).
// The order is exactly the sampler's, so prefetching never changes what a run sees, and the
// position handed to checkpoints counts only the batches returned, not those read ahead.
// The dataset may be in memory or streamed from HDF5 (TensorDataset::open_streaming); only the
// reader thread calls its get().
#pragma once

#include <torch/types.h>

#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>

#include "data/dataset.h"
#include "data/sampler.h"

namespace unidiff::data {

struct LoaderOptions {
  int64_t prefetch = 4;              ///< batches read ahead (>= 1)
  bool hflip = false;                ///< random horizontal flip of images (keyed per sample)
  uint32_t seed = 0;                 ///< key of the flip decisions
  torch::Device device = torch::kCPU;  ///< where next() delivers x
  bool decode = true;                ///< false: x stays as stored (uint8 images) for the caller
};

class Loader {
 public:
  /// `sampler` already positioned (set_position) where the run resumes.
  Loader(const TensorDataset& dataset, ShardedSampler sampler, LoaderOptions options);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  /// The next batch of this rank: x on the device, labels and index on the CPU (pinned for a CUDA
  /// device, so their copies there need not wait). Rethrows an
  /// exception raised by the reader thread.
  Batch next();
  /// Samples consumed (globally) by the batches returned so far: what a checkpoint saves.
  int64_t position() const { return position_; }

 private:
  void read_loop();

  const TensorDataset& dataset_;
  ShardedSampler sampler_;
  LoaderOptions options_;
  int64_t global_batch_;
  int64_t position_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Batch> queue_;
  std::exception_ptr error_;
  bool stop_ = false;
  std::thread reader_;
};

/// Flips images [B, C, H, W] horizontally where the keyed coin of (seed, step, index) says so
/// (step = the global batch number). Returns a new tensor.
torch::Tensor keyed_hflip(const torch::Tensor& images, const torch::Tensor& index, uint32_t seed,
                          int64_t step);

}  // namespace unidiff::data
