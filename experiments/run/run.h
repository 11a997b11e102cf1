// The one training run: `unidiff train` for every method. It owns what methods share (ranks and
// devices, threads, data streams and their positions, the resume guard, the run directory,
// progress lines and metrics.jsonl, evaluation during training, the checkpoint policy, signals
// and exit codes) and drives the method chosen by --method (experiments/run/method.h):
//
//   setup (the method checks its settings, opens its streams, builds its groups; nothing written)
//   -> resume guard -> run directory -> restore groups, streams and method state
//   -> for each step: method.step, loss window, progress, evaluation, checkpoint / stop
//   -> replicas checked -> RUN_DIR/model.h5 (the method's result model)
#pragma once

#include <cstdint>
#include <fstream>
#include <map>
#include <memory>
#include <string>

#include <torch/types.h>

#include "core/settings.h"
#include "dist/communicator.h"
#include "experiments/run/method.h"
#include "experiments/run/model_group.h"
#include "experiments/run/run_config.h"
#include "experiments/run/streams.h"

namespace unidiff::experiments {

struct TrainResult {
  double final_loss = 0;         ///< mean loss over the last logging window, over all ranks
  int64_t steps = 0;             ///< steps run
  double replica_divergence = 0; ///< max |param - rank 0's param| at the end (0 when in sync)
  int64_t start_step = 0;        ///< the step the run resumed from (0: a fresh start)
  bool stopped = false;          ///< stopped early by a signal or --train_stop_at, checkpointed
};

/// What a method sees of its run.
class Run {
 public:
  /// Picks the device (cuda:local_rank when there is one), the communicator (NCCL on CUDA, MPI
  /// otherwise) and the threads.
  explicit Run(const RunConfig& config);
  ~Run();

  const RunConfig& config() const { return config_; }
  torch::Device device() const { return device_; }
  dist::Communicator& comm() { return *comm_; }
  int rank() const { return comm_->rank(); }
  int world() const { return comm_->size(); }
  int threads() const { return threads_; }
  uint32_t seed() const { return config_.seed; }
  ModelGroups& groups() { return groups_; }

  /// Opens data stream `name` over the dataset at `path` (--data_stream: read batch by batch)
  /// with `global_batch` samples per step over all ranks. Setup only; bad input throws.
  DataStream& open_stream(const std::string& name, const std::string& path, int64_t global_batch);
  DataStream& stream(const std::string& name);
  /// The first stream opened (the run's main data), or nullptr.
  DataStream* main_stream();

 private:
  friend TrainResult train(const RunConfig&, const settings::Assignments&);
  RunConfig config_;
  torch::Device device_;
  std::unique_ptr<dist::Communicator> comm_;
  int threads_ = 1;
  ModelGroups groups_;
  std::vector<std::unique_ptr<DataStream>> streams_;
};

/// Runs the method `config.method` (its settings among `assignments`) to its last step or to a
/// stop. Bad input throws InputError before anything is written; a diverged loss throws
/// std::runtime_error naming the step and its batch.
TrainResult train(const RunConfig& config, const settings::Assignments& assignments);

}  // namespace unidiff::experiments
