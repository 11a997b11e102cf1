// MPI implementation of dist/communicator.h (CPU tensors; CUDA tensors staged through the host),
// and the trivial one-rank communicator used when the job has no MPI.
#include "dist/communicator.h"

#include "core/error.h"
#include <atomic>

#include "dist/mpi_check.h"
#include "dist/watchdog.h"
#include "dist/world.h"

namespace unidiff::dist {
namespace {

MPI_Datatype mpi_type(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat32: return MPI_FLOAT;
    case torch::kFloat64: return MPI_DOUBLE;
    case torch::kInt32: return MPI_INT32_T;
    case torch::kInt64: return MPI_INT64_T;
    case torch::kUInt8: return MPI_UINT8_T;
    default: break;
  }
  throw std::invalid_argument(std::string("MPI communicator: unsupported dtype ") +
                              c10::toString(t));
}

MPI_Op mpi_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return MPI_SUM;
    case ReduceOp::kMax: return MPI_MAX;
    case ReduceOp::kMin: return MPI_MIN;
  }
  return MPI_SUM;
}

int checked_count(const torch::Tensor& t) {
  UD_ASSERT(t.numel() <= std::numeric_limits<int>::max(), "tensor too large for one MPI call");
  return static_cast<int>(t.numel());
}

/// A contiguous host tensor to communicate, and how to write the result back.
struct Staged {
  torch::Tensor host;
  bool copy_back;
};

Staged stage(const torch::Tensor& t) {
  if (t.device().is_cpu() && t.is_contiguous()) return {t, false};
  return {t.to(torch::kCPU).contiguous(), true};
}

class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(MPI_Comm parent = MPI_COMM_WORLD, std::string label = "world")
      : id_(next_id()), label_(std::move(label)) {
    MPI_CHECK(MPI_Comm_dup(parent, &comm_));
    MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
    MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
    MPI_CHECK(MPI_Comm_size(comm_, &size_));
  }
  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&comm_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "mpi"; }
  void set_label(const std::string& label) override { label_ = label; }

  void all_reduce(torch::Tensor& tensor, ReduceOp op) override {
    Staged s = stage(tensor);
    const WatchedCollective watched(id_, label_, "all_reduce", ++seq_, s.host.numel());
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, s.host.data_ptr(), checked_count(s.host),
                            mpi_type(s.host.scalar_type()), mpi_op(op), comm_));
    if (s.copy_back) tensor.copy_(s.host);
  }

  void broadcast(torch::Tensor& tensor, int root) override {
    Staged s = stage(tensor);
    const WatchedCollective watched(id_, label_, "broadcast", ++seq_, s.host.numel());
    MPI_CHECK(MPI_Bcast(s.host.data_ptr(), checked_count(s.host), mpi_type(s.host.scalar_type()),
                        root, comm_));
    if (s.copy_back) tensor.copy_(s.host);
  }

  torch::Tensor all_gather(const torch::Tensor& tensor) override {
    const torch::Tensor in = tensor.to(torch::kCPU).contiguous();
    std::vector<int64_t> shape(in.sizes().begin(), in.sizes().end());
    if (shape.empty()) shape.push_back(1);
    shape[0] *= size_;
    torch::Tensor out = torch::empty(shape, in.options());
    const WatchedCollective watched(id_, label_, "all_gather", ++seq_, out.numel());
    MPI_CHECK(MPI_Allgather(in.data_ptr(), checked_count(in), mpi_type(in.scalar_type()),
                            out.data_ptr(), checked_count(in), mpi_type(in.scalar_type()), comm_));
    return out.to(tensor.device());
  }

  void all_gather_inplace(torch::Tensor& full) override {
    UD_ASSERT(full.dim() == 1 && full.numel() % size_ == 0, "all_gather_inplace needs flat [size * n]");
    Staged s = stage(full);
    const int n = checked_count(s.host) / size_;
    const WatchedCollective watched(id_, label_, "all_gather", ++seq_, s.host.numel());
    MPI_CHECK(MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, s.host.data_ptr(), n,
                            mpi_type(s.host.scalar_type()), comm_));
    if (s.copy_back) full.copy_(s.host);
  }

  torch::Tensor reduce_scatter(torch::Tensor& full, ReduceOp op) override {
    UD_ASSERT(full.dim() == 1 && full.numel() % size_ == 0, "reduce_scatter needs flat [size * n]");
    Staged s = stage(full);
    const int n = checked_count(s.host) / size_;
    torch::Tensor out = torch::empty({n}, s.host.options());
    const WatchedCollective watched(id_, label_, "reduce_scatter", ++seq_, s.host.numel());
    MPI_CHECK(MPI_Reduce_scatter_block(s.host.data_ptr(), out.data_ptr(), n,
                                       mpi_type(s.host.scalar_type()), mpi_op(op), comm_));
    return out.to(full.device());
  }

  void barrier() override {
    const WatchedCollective watched(id_, label_, "barrier", ++seq_, 0);
    MPI_CHECK(MPI_Barrier(comm_));
  }

  std::unique_ptr<Communicator> duplicate() const override {
    return std::make_unique<MpiCommunicator>(comm_, label_);
  }

  bool supports_background_thread() const override {
    int level = MPI_THREAD_SINGLE;
    MPI_Query_thread(&level);
    return level >= MPI_THREAD_MULTIPLE;
  }

 private:
  /// Communicators are numbered in the order this process makes them; every rank makes them in
  /// the same order (MPI_Comm_dup is collective), so (id, seq) names one collective job-wide.
  static int64_t next_id() {
    static std::atomic<int64_t> next{0};
    return next++;
  }

  int64_t id_;
  std::string label_;  ///< for the watchdog's messages: "world", "group 'student' gradients"
  int64_t seq_ = 0;    ///< collectives called so far (one thread at a time uses a communicator)
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
};

/// The group of one rank: reductions are the identity.
class SelfCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string backend() const override { return "self"; }
  void all_reduce(torch::Tensor&, ReduceOp) override {}
  void broadcast(torch::Tensor&, int root) override { UD_ASSERT(root == 0, "root ", root); }
  torch::Tensor all_gather(const torch::Tensor& tensor) override {
    return tensor.dim() == 0 ? tensor.reshape({1}).clone() : tensor.clone();
  }
  void all_gather_inplace(torch::Tensor&) override {}
  torch::Tensor reduce_scatter(torch::Tensor& full, ReduceOp) override { return full.clone(); }
  void barrier() override {}
  std::unique_ptr<Communicator> duplicate() const override {
    return std::make_unique<SelfCommunicator>();
  }
  bool supports_background_thread() const override { return true; }
};

}  // namespace

std::unique_ptr<Communicator> make_world_communicator() {
  if (is_initialized()) return std::make_unique<MpiCommunicator>();
  return std::make_unique<SelfCommunicator>();
}

#ifndef UNIDIFF_WITH_NCCL
bool has_nccl() { return false; }

std::unique_ptr<Communicator> make_nccl_communicator(torch::Device, double) {
  throw std::runtime_error("this build has no NCCL (nccl.h and libnccl were not found at configure time)");
}
#endif

std::unique_ptr<Communicator> make_communicator(torch::Device device) {
  if (device.is_cuda() && has_nccl()) {
    const double timeout = collective_timeout();
    return make_nccl_communicator(device, timeout > 0 ? timeout : 1e9);
  }
  return make_world_communicator();
}

}  // namespace unidiff::dist
