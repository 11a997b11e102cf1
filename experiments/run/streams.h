// The data streams of a training run. A method reads one or several named streams (DMD2 feeds
// real data to its GAN phase apart from its generator phase): each is a dataset, a sharded
// sampler whose order is keyed by (seed, stream number, epoch) and a prefetching loader. Each
// stream's position (samples consumed, counted globally) goes into the checkpoint, so a resumed
// run on any number of ranks reads exactly the batches an uninterrupted one would.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "data/dataset.h"
#include "data/loader.h"
#include "data/sampler.h"
#include "dist/checkpoint.h"

namespace unidiff::experiments {

class DataStream {
 public:
  /// `number` keys the stream's order (0: the run's first stream, whose order is the plain keyed
  /// permutation of earlier versions). check() refuses a batch that does not fit the dataset or
  /// the ranks (the run calls it once its method has checked its own settings).
  DataStream(std::string name, uint8_t number, data::TensorDataset dataset, int64_t global_batch, int world,
             int rank, uint32_t seed, torch::Device device);
  ~DataStream();
  /// InputError when the global batch is larger than the dataset or not divisible by the ranks.
  void check();

  const std::string& name() const { return name_; }
  const data::TensorDataset& dataset() const { return dataset_; }
  int64_t global_batch() const { return global_batch_; }
  int64_t local_batch() const { return global_batch_ / world_; }

  /// This rank's share of the next global batch (x on the run's device; index and labels on the
  /// host, pinned on CUDA). The first call starts the loader at the restored position.
  data::Batch next();
  /// Samples consumed, counted globally.
  int64_t position() const;

  /// Its position into / out of a checkpoint: `stream/<name>/position` (the first stream also as
  /// `loader_position`, the name earlier checkpoints used). A changed global batch resumes at the
  /// last whole batch consumed.
  void save(dist::CheckpointWriter& writer) const;
  void load(const dist::CheckpointReader& reader);

  /// The run's step the next batch belongs to (kept with the batch's indices for error reports).
  void set_step(int64_t step) { step_ = step; }
  /// The global sample indices of this rank's batch of `step`, if it was among the last steps read.
  std::optional<torch::Tensor> indices_of(int64_t step) const;

 private:
  std::string name_;
  uint8_t number_;
  data::TensorDataset dataset_;
  int64_t global_batch_;
  int world_, rank_;
  uint32_t seed_;
  std::optional<data::ShardedSampler> sampler_;
  data::LoaderOptions options_;
  std::unique_ptr<data::Loader> loader_;
  int64_t step_ = 0;
  std::deque<std::pair<int64_t, torch::Tensor>> recent_;  ///< (step, indices) of the last batches
};

}  // namespace unidiff::experiments
