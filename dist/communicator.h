// Collective communication over a group of ranks. One interface, an MPI implementation for CPU
// tensors and an NCCL one for CUDA tensors (dist/nccl_communicator.cpp). Tensors are reduced in place; every rank of the group
// must make the same calls in the same order with tensors of the same shape and dtype.
#pragma once

#include <torch/types.h>

#include <memory>
#include <string>

namespace unidiff::dist {

enum class ReduceOp { kSum, kMax, kMin };

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend() const = 0;
  /// What the collective watchdog (dist/watchdog.h) calls this communicator in its messages;
  /// duplicates inherit it. "world" unless set.
  virtual void set_label(const std::string& /*label*/) {}

  /// In place: every rank's `tensor` becomes the element-wise reduction over the group.
  virtual void all_reduce(torch::Tensor& tensor, ReduceOp op = ReduceOp::kSum) = 0;
  /// In place: every rank's `tensor` becomes root's.
  virtual void broadcast(torch::Tensor& tensor, int root) = 0;
  /// Concatenates every rank's `tensor` [n, ...] along dim 0 in rank order: [size * n, ...].
  virtual torch::Tensor all_gather(const torch::Tensor& tensor) = 0;
  /// Flat, contiguous `full` [size * n]: rank r's slice r of `full` becomes every rank's
  /// `full.slice(r)` (an in-place all-gather, as ZeRO-1 does for updated parameter shards).
  virtual void all_gather_inplace(torch::Tensor& full) = 0;
  /// Flat, contiguous `full` [size * n]: returns this rank's slice [n] of the element-wise
  /// reduction of every rank's `full` (`full` is scratch afterwards).
  virtual torch::Tensor reduce_scatter(torch::Tensor& full, ReduceOp op = ReduceOp::kSum) = 0;
  virtual void barrier() = 0;
  /// A new communicator over the same ranks whose collectives never interleave with this one's
  /// (MPI_Comm_dup): one per model group, one per reducer thread.
  virtual std::unique_ptr<Communicator> duplicate() const = 0;
  /// Whether another thread may run this communicator's collectives while the creating thread
  /// keeps computing, several groups' threads at once (MPI initialised with MPI_THREAD_MULTIPLE, or
  /// no MPI at all).
  virtual bool supports_background_thread() const = 0;

  /// Whether collectives are queued on the device behind the work of the caller's current stream,
  /// the host never waiting (NCCL on CUDA tensors). Such a communicator can start collectives
  /// from the thread that computes (a reducer needs no thread of its own) and inside a CUDA graph
  /// capture.
  virtual bool stream_ordered() const { return false; }
  /// Starts an in-place all-reduce of `tensor` as the caller's current stream leaves it; the
  /// result is there for the stream that calls join_started() after that call, and `tensor` must
  /// not be read or written before. The default runs all_reduce (done on return).
  virtual void start_all_reduce(torch::Tensor& tensor, ReduceOp op = ReduceOp::kSum) { all_reduce(tensor, op); }
  /// Starts reduce_scatter(full, op); the returned slice holds the result after join_started().
  virtual torch::Tensor start_reduce_scatter(torch::Tensor& full, ReduceOp op = ReduceOp::kSum) {
    return reduce_scatter(full, op);
  }
  /// Makes the caller's current stream wait for every collective started since the last join.
  virtual void join_started() {}
};

/// A communicator over every rank of the job (MPI_COMM_WORLD). Tensors on a CUDA device are
/// staged through host memory (correct, not fast: make_nccl_communicator is the CUDA path).
std::unique_ptr<Communicator> make_world_communicator();

/// Whether this build has the NCCL communicator.
bool has_nccl();
/// A communicator over every rank for CUDA tensors on `device` (this rank's GPU), NCCL under the
/// hood, MPI for CPU tensors; a host wait longer than `timeout_s` aborts with a message. Throws
/// when the build has no NCCL. NCCL refuses two ranks on one GPU.
std::unique_ptr<Communicator> make_nccl_communicator(torch::Device device, double timeout_s = 600);

/// The communicator for tensors on `device`: NCCL for a CUDA device when the build has it, else
/// the world communicator (MPI, CUDA tensors staged through the host).
std::unique_ptr<Communicator> make_communicator(torch::Device device);

}  // namespace unidiff::dist
