// NCCL implementation of dist/communicator.h for CUDA tensors (built where NCCL's header and
// library are found; see dist/CMakeLists.txt). One NCCL communicator per object, its unique id
// made on rank 0 and broadcast over MPI; its own non-blocking CUDA stream, ordered after the
// producer's stream with an event before each collective and before the consumer's next use after
// it (at once, or at join_started() for the start_* calls a reducer makes during backward), so the
// host never waits. CPU tensors (metrics, norms on the host) go through an MPI
// communicator over the same ranks. Every NCCL and CUDA call is checked; waits that the host does
// make (barrier) poll for NCCL's asynchronous errors and give up after `timeout` seconds with
// ncclCommAbort and a message, instead of hanging.
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <cstring>
#include <thread>
#include <utility>

#include "core/error.h"
#include "dist/communicator.h"
#include "dist/mpi_check.h"
#include "dist/world.h"

namespace unidiff::dist {
namespace {

#define UD_NCCL_CHECK(expr)                                                                    \
  do {                                                                                         \
    const ncclResult_t rc_ = (expr);                                                           \
    if (rc_ != ncclSuccess) {                                                                  \
      throw std::runtime_error(std::string("NCCL call ") + #expr + " failed: " +               \
                               ncclGetErrorString(rc_));                                       \
    }                                                                                          \
  } while (0)

#define UD_CUDA_CHECK(expr)                                                                    \
  do {                                                                                         \
    const cudaError_t rc_ = (expr);                                                            \
    if (rc_ != cudaSuccess) {                                                                  \
      throw std::runtime_error(std::string("CUDA call ") + #expr + " failed: " +               \
                               cudaGetErrorString(rc_));                                       \
    }                                                                                          \
  } while (0)

ncclDataType_t nccl_type(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat32: return ncclFloat32;
    case torch::kFloat64: return ncclFloat64;
    case torch::kBFloat16: return ncclBfloat16;
    case torch::kHalf: return ncclFloat16;
    case torch::kInt32: return ncclInt32;
    case torch::kInt64: return ncclInt64;
    case torch::kUInt8: return ncclUint8;
    default: break;
  }
  throw std::invalid_argument(std::string("NCCL communicator: unsupported dtype ") + c10::toString(t));
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return ncclSum;
    case ReduceOp::kMax: return ncclMax;
    case ReduceOp::kMin: return ncclMin;
  }
  return ncclSum;
}

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(torch::Device device, std::unique_ptr<Communicator> host, double timeout_s)
      : device_(device), host_(std::move(host)), timeout_s_(timeout_s) {
    UD_ASSERT(device_.is_cuda(), "NCCL needs a CUDA device");
    c10::cuda::CUDAGuard guard(device_);
    // The unique id travels as bytes over the host communicator (MPI).
    ncclUniqueId id{};
    if (host_->rank() == 0) UD_NCCL_CHECK(ncclGetUniqueId(&id));
    torch::Tensor bytes = torch::from_blob(&id, {static_cast<int64_t>(sizeof(id))}, torch::kUInt8).clone();
    host_->broadcast(bytes, 0);
    std::memcpy(&id, bytes.data_ptr(), sizeof(id));
    UD_NCCL_CHECK(ncclCommInitRank(&comm_, host_->size(), id, host_->rank()));
    UD_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    UD_CUDA_CHECK(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming));
    UD_CUDA_CHECK(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming));
  }
  ~NcclCommunicator() override {
    c10::cuda::CUDAGuard guard(device_);
    cudaStreamSynchronize(stream_);
    ncclCommDestroy(comm_);
    cudaEventDestroy(ready_);
    cudaEventDestroy(done_);
    cudaStreamDestroy(stream_);
  }
  int rank() const override { return host_->rank(); }
  int size() const override { return host_->size(); }
  std::string backend() const override { return "nccl"; }
  void set_label(const std::string& label) override { host_->set_label(label); }

  void all_reduce(torch::Tensor& tensor, ReduceOp op) override {
    start_all_reduce(tensor, op);
    join_started();
  }

  void broadcast(torch::Tensor& tensor, int root) override {
    if (!tensor.is_cuda()) return host_->broadcast(tensor, root);
    UD_ASSERT(tensor.is_contiguous(), "NCCL broadcast needs a contiguous tensor");
    run(tensor, [&] {
      UD_NCCL_CHECK(ncclBroadcast(tensor.data_ptr(), tensor.data_ptr(), tensor.numel(),
                                  nccl_type(tensor.scalar_type()), root, comm_, stream_));
    });
  }

  torch::Tensor all_gather(const torch::Tensor& tensor) override {
    if (!tensor.is_cuda()) return host_->all_gather(tensor);
    const torch::Tensor in = tensor.contiguous();
    std::vector<int64_t> shape(in.sizes().begin(), in.sizes().end());
    if (shape.empty()) shape.push_back(1);
    shape[0] *= size();
    torch::Tensor out = torch::empty(shape, in.options());
    run(out, [&] {
      UD_NCCL_CHECK(ncclAllGather(in.data_ptr(), out.data_ptr(), in.numel(),
                                  nccl_type(in.scalar_type()), comm_, stream_));
    }, &in);
    return out;
  }

  void all_gather_inplace(torch::Tensor& full) override {
    if (!full.is_cuda()) return host_->all_gather_inplace(full);
    UD_ASSERT(full.dim() == 1 && full.numel() % size() == 0 && full.is_contiguous(),
              "all_gather_inplace needs flat [size * n]");
    const int64_t n = full.numel() / size();
    run(full, [&] {
      auto* base = static_cast<char*>(full.data_ptr());
      UD_NCCL_CHECK(ncclAllGather(base + rank() * n * full.element_size(), full.data_ptr(), n,
                                  nccl_type(full.scalar_type()), comm_, stream_));
    });
  }

  torch::Tensor reduce_scatter(torch::Tensor& full, ReduceOp op) override {
    torch::Tensor out = start_reduce_scatter(full, op);
    join_started();
    return out;
  }

  void barrier() override {
    torch::Tensor one = torch::ones({1}, torch::TensorOptions().device(device_));
    all_reduce(one, ReduceOp::kSum);
    wait_with_timeout();
    host_->barrier();
  }

  std::unique_ptr<Communicator> duplicate() const override {
    return std::make_unique<NcclCommunicator>(device_, host_->duplicate(), timeout_s_);
  }

  bool supports_background_thread() const override { return true; }

  bool stream_ordered() const override { return true; }

  void start_all_reduce(torch::Tensor& tensor, ReduceOp op) override {
    if (!tensor.is_cuda()) return host_->all_reduce(tensor, op);
    UD_ASSERT(tensor.is_contiguous(), "NCCL all_reduce needs a contiguous tensor");
    start(tensor, [&] {
      UD_NCCL_CHECK(ncclAllReduce(tensor.data_ptr(), tensor.data_ptr(), tensor.numel(),
                                  nccl_type(tensor.scalar_type()), nccl_op(op), comm_, stream_));
    });
  }

  torch::Tensor start_reduce_scatter(torch::Tensor& full, ReduceOp op) override {
    if (!full.is_cuda()) return host_->reduce_scatter(full, op);
    UD_ASSERT(full.dim() == 1 && full.numel() % size() == 0 && full.is_contiguous(),
              "reduce_scatter needs flat [size * n]");
    torch::Tensor out = torch::empty({full.numel() / size()}, full.options());
    start(out, [&] {
      UD_NCCL_CHECK(ncclReduceScatter(full.data_ptr(), out.data_ptr(), out.numel(),
                                      nccl_type(full.scalar_type()), nccl_op(op), comm_, stream_));
    }, &full);
    return out;
  }

  void join_started() override {
    if (!started_) return;
    started_ = false;
    c10::cuda::CUDAGuard guard(device_);
    const cudaStream_t compute = c10::cuda::getCurrentCUDAStream(device_.index()).stream();
    UD_CUDA_CHECK(cudaEventRecord(done_, stream_));
    UD_CUDA_CHECK(cudaStreamWaitEvent(compute, done_, 0));
  }

 private:
  /// Orders the collective after the work queued on the caller's current stream and enqueues it
  /// on the NCCL stream; the tensors' memory is marked in use by the NCCL stream for the caching
  /// allocator. Nothing waits for it yet (join_started()).
  template <typename Fn>
  void start(const torch::Tensor& result, Fn&& enqueue, const torch::Tensor* input = nullptr) {
    c10::cuda::CUDAGuard guard(device_);
    const cudaStream_t compute = c10::cuda::getCurrentCUDAStream(device_.index()).stream();
    UD_CUDA_CHECK(cudaEventRecord(ready_, compute));
    UD_CUDA_CHECK(cudaStreamWaitEvent(stream_, ready_, 0));
    enqueue();
    const auto nccl_stream = c10::cuda::getStreamFromExternal(stream_, device_.index());
    c10::cuda::CUDACachingAllocator::recordStream(result.storage().data_ptr(), nccl_stream);
    if (input != nullptr) {
      c10::cuda::CUDACachingAllocator::recordStream(input->storage().data_ptr(), nccl_stream);
    }
    started_ = true;
  }

  /// Orders the collective after the work queued on the caller's current stream, enqueues it on
  /// the NCCL stream, and makes the caller's stream wait for it before anything later uses the
  /// result. The tensors' memory is marked in use by the NCCL stream for the caching allocator.
  template <typename Fn>
  void run(const torch::Tensor& result, Fn&& enqueue, const torch::Tensor* input = nullptr) {
    start(result, std::forward<Fn>(enqueue), input);
    join_started();
  }

  /// Host wait for the NCCL stream, watching for asynchronous NCCL errors and the timeout.
  void wait_with_timeout() {
    const auto start = std::chrono::steady_clock::now();
    for (;;) {
      const cudaError_t q = cudaStreamQuery(stream_);
      if (q == cudaSuccess) return;
      if (q != cudaErrorNotReady) UD_CUDA_CHECK(q);
      ncclResult_t async = ncclSuccess;
      UD_NCCL_CHECK(ncclCommGetAsyncError(comm_, &async));
      const double waited =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (async != ncclSuccess || waited > timeout_s_) {
        ncclCommAbort(comm_);
        throw std::runtime_error(
            async != ncclSuccess
                ? std::string("NCCL collective failed: ") + ncclGetErrorString(async)
                : "NCCL collective did not finish within " + std::to_string(timeout_s_) +
                      " s (a rank died or hangs); aborting the job");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }

  torch::Device device_;
  std::unique_ptr<Communicator> host_;
  double timeout_s_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t ready_ = nullptr;
  cudaEvent_t done_ = nullptr;
  bool started_ = false;  ///< collectives queued since the last join_started()
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(torch::Device device, double timeout_s) {
  return std::make_unique<NcclCommunicator>(device, make_world_communicator(), timeout_s);
}

bool has_nccl() { return true; }

}  // namespace unidiff::dist
