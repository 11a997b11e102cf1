// Data-parallel gradient synchronisation in the manner of PyTorch DDP's reducer, for LibTorch
// (which has no C++ DDP). The parameters of a model group are laid out in flat buckets of about
// `bucket_bytes` (in reverse registration order, the order backward produces gradients); every
// parameter's data and .grad become views into its bucket's buffers. A post-hook on each
// parameter's gradient accumulator counts the bucket's gradients; when the last one arrives the
// bucket's collective is started, so communication overlaps the rest of backward: with a
// stream-ordered communicator (NCCL) it is queued on the device right there, behind the bucket's
// last gradient, and finalize() makes the compute stream wait for all of them (no host thread,
// no host wait, so the whole step can be captured in a CUDA graph); with MPI it runs on a
// background thread (its own duplicated communicator) and finalize() waits for the thread.
//
// Conventions:
// - each rank's loss is the mean over its own equal share of the global batch; the reducer
//   averages (sum / world size), so the result is the global-batch gradient;
// - buckets are launched strictly in bucket order on every rank (collectives must match), however
//   the hooks arrive; parameters that got no gradient this step count as zero;
// - set_sync(false) accumulates micro-batches locally (no communication) until set_sync(true);
// - shard_optimizer (ZeRO-1): buckets are padded to a multiple of the world size and
//   reduce-scattered instead of all-reduced; rank r's slice r of each bucket is then the averaged
//   gradient it owns (the rest of .grad is stale) and the optimizer updates only that slice, then
//   all_gather_params() restores full parameters on every rank.
// - gradients are only reset by zero_grad() here: an optimizer's zero_grad(set_to_none) would
//   break the views, and the hook reports that as an error.
#pragma once

#include <torch/types.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <string>
#include <vector>

#include "dist/communicator.h"

namespace torch::autograd {
struct Node;
}

namespace unidiff::dist {

struct ReducerOptions {
  int64_t bucket_bytes = 25LL << 20;  ///< target bucket size (DDP's default, 25 MiB)
  bool overlap = true;                ///< start buckets during backward (else all in finalize)
  bool shard_optimizer = false;       ///< ZeRO-1: reduce-scatter; the optimizer owns one slice
  bool communicate_alone = false;     ///< run the collectives on one rank too (a check of the
                                      ///< communication path on a machine with one GPU)
  const char* label = "gradients";    ///< the reducer's communicator in the watchdog's messages
                                      ///< (copied by the constructor)
};

/// Communication counters, cumulative since construction (or reset_stats()).
/// The times are host times: with a stream-ordered communicator the host never waits for a
/// collective and they stay 0 (a device profile shows the overlap there).
struct ReducerStats {
  int64_t steps = 0;
  int64_t bytes = 0;                ///< gradient bytes handed to collectives
  double comm_seconds = 0;          ///< time inside collectives (background thread included)
  double exposed_seconds = 0;       ///< time finalize() waited for communication
  /// Share of the communication time hidden behind backward: 1 - exposed / comm.
  double hidden_fraction() const {
    return comm_seconds > 0 ? std::max(0.0, 1.0 - exposed_seconds / comm_seconds) : 0.0;
  }
};

class Reducer {
 public:
  /// `params` must share one device and dtype (float32 master weights). The parameters' data
  /// are moved into the flat buffers (values kept). Collective: every rank constructs it.
  Reducer(std::vector<torch::Tensor> params, const Communicator& comm, ReducerOptions options = {});
  ~Reducer();
  Reducer(const Reducer&) = delete;
  Reducer& operator=(const Reducer&) = delete;

  /// Zeroes every gradient (the bucket buffers).
  void zero_grad();
  /// false: the coming backward passes accumulate without communication (micro-batches).
  void set_sync(bool sync);
  /// Waits until every bucket is reduced; then each .grad (ZeRO: this rank's slices) holds the
  /// average over ranks. Does nothing while set_sync(false).
  void finalize();
  /// ZeRO-1 only: gathers every rank's updated slice of the parameters.
  void all_gather_params();
  /// Moves the gradient hooks onto fresh gradient accumulators, which the autograd engine runs on
  /// the CUDA stream current now. The engine runs an accumulator on the stream that was current
  /// when it was made, and the reducer keeps its accumulators alive, so without this they stay on
  /// the stream of construction (usually the default stream, which a CUDA graph capture on
  /// another stream cannot take in). Call between steps, with no autograd graph alive; InputError
  /// when an accumulator is still held elsewhere (a graph kept with retain_graph).
  void rebind_hooks();

  int num_buckets() const { return static_cast<int>(buckets_.size()); }
  /// Whether collectives run on the reducer's own thread during backward (MPI, overlap on).
  bool background() const { return background_; }
  /// Where parameter k lives: its bucket and its first element there.
  struct Slot {
    int bucket = 0;
    int64_t offset = 0;
  };
  Slot slot(size_t k) const { return slots_[k]; }
  /// The element range [begin, end) of bucket b that param_shard(b) / grad_shard(b) cover.
  std::pair<int64_t, int64_t> shard_range(int b) const;
  /// The slice of bucket b's flat parameters / gradients this rank updates: the whole bucket, or
  /// slice `rank` under ZeRO-1 (views; the optimizer updates them in place).
  torch::Tensor param_shard(int b) const;
  torch::Tensor grad_shard(int b) const;
  /// Number of real (unpadded) parameter elements.
  int64_t numel() const { return numel_; }
  bool sharded() const { return options_.shard_optimizer; }
  /// The reducer's own communicator (for reductions over the shards, e.g. the gradient norm).
  Communicator& comm() { return *comm_; }
  const ReducerStats& stats() const { return stats_; }
  void reset_stats() { stats_ = {}; }
  const std::vector<torch::Tensor>& params() const { return params_; }

 private:
  struct Bucket {
    torch::Tensor params;  // flat [padded]
    torch::Tensor grads;   // flat [padded]
    std::vector<size_t> members;
    int pending = 0;
  };
  void bind_hooks();
  void unbind_hooks();
  void mark_ready(size_t param);
  bool communicating() const { return comm_->size() > 1 || options_.communicate_alone; }
  void launch_ready_locked();
  /// Starts bucket b's all-reduce (or ZeRO-1 reduce-scatter: returns this rank's slice).
  torch::Tensor start_collective(int b);
  /// After the collective: the sum over ranks becomes the average (ZeRO-1: `mine` into the
  /// gradient shard).
  void average(int b, const torch::Tensor& mine);
  int64_t bucket_bytes(int b) const;
  void start_bucket_locked(int b);
  void finish_started_buckets();
  void reduce_bucket(int b);
  void worker_loop();

  std::vector<torch::Tensor> params_;
  std::unique_ptr<Communicator> comm_;
  ReducerOptions options_;
  bool background_ = false;      ///< overlapped collectives on the worker thread (MPI)
  bool stream_ordered_ = false;  ///< overlapped collectives queued from the hooks (NCCL)
  std::vector<torch::Tensor> scattered_;  ///< ZeRO-1, stream-ordered: each bucket's started reduce-scatter
  int64_t numel_ = 0;
  std::vector<Bucket> buckets_;
  std::vector<Slot> slots_;
  std::vector<const void*> grad_ptr_;  // where each .grad must live (its bucket view)
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators_;
  std::vector<uintptr_t> hook_keys_;

  std::mutex mutex_;
  std::condition_variable cv_;
  bool sync_ = true;
  std::vector<char> marked_;
  std::vector<char> ready_;
  int next_launch_ = 0;
  int done_ = 0;
  std::deque<int> queue_;
  std::exception_ptr error_;
  bool stop_ = false;
  ReducerStats stats_;
  std::thread worker_;
};

}  // namespace unidiff::dist
