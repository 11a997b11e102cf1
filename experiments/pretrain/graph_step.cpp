// experiments/pretrain/graph_step.h.
#include "experiments/pretrain/graph_step.h"

#include <exception>
#include <optional>
#include <utility>

#include "core/error.h"
#include "core/log.h"

#ifdef UNIDIFF_WITH_CUDA
#include <ATen/autocast_mode.h>
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace unidiff::experiments {

struct GraphedPretrainStep::State {
  State(ModelGroup& group, PretrainObjective& objective, uint32_t seed, std::string precision, bool channels_last,
        int warmup, torch::Device device, bool emulate)
      : group(group), objective(objective), seed(seed), precision(std::move(precision)),
        channels_last(channels_last), warmup(warmup), device(device), emulate(emulate) {}

  ModelGroup& group;
  PretrainObjective& objective;
  uint32_t seed;
  std::string precision;
  bool channels_last;
  int warmup;
  torch::Device device;
  bool emulate;
  int eager = 0;           ///< eager steps run so far
  bool captured = false;
  int64_t key = 0;         ///< the objective's key the graph was captured with
  int64_t step_at_capture = 0;
#ifdef UNIDIFF_WITH_CUDA
  std::unique_ptr<at::cuda::CUDAGraph> graph;
  /// The stream every warm-up step and every capture runs on, the one the reducer's gradient
  /// accumulators are bound to: the autograd engine runs a retained accumulator on the stream it
  /// was made on, and the default stream cannot take part in a capture.
  std::optional<c10::cuda::CUDAStream> stream;
#endif
  // The graph's inputs (rewritten before each replay) and its output (rewritten by each replay).
  torch::Tensor x0, index, labels, counter, loss;

  /// Allocates the inputs for batches like `data`; false when they already fit.
  bool allocate(const StepData& data) {
    const bool fits = x0.defined() && x0.sizes() == data.x0.sizes() && x0.dtype() == data.x0.dtype() &&
                      x0.strides() == data.x0.strides() && labels.defined() == data.labels.defined();
    if (fits) return false;
    x0 = torch::empty_like(data.x0, data.x0.options().device(device));
    index = torch::empty({data.index.size(0)}, torch::dtype(torch::kInt64).device(device));
    labels = data.labels.defined() ? torch::empty({data.labels.size(0)}, torch::dtype(torch::kInt64).device(device))
                                   : torch::Tensor();
    counter = torch::zeros({}, torch::dtype(torch::kInt64).device(device));
    return true;
  }

  /// The step's inputs into the graph's buffers: device-side copies and a fill, no host wait.
  void load(const StepData& data) {
    torch::NoGradGuard no_grad;
    x0.copy_(data.x0, /*non_blocking=*/true);
    index.copy_(data.index, /*non_blocking=*/true);
    if (labels.defined()) labels.copy_(data.labels, /*non_blocking=*/true);
    counter.fill_(data.step);
  }

  /// What the captured kernels read: the buffers, and the host step of the capture (stale in
  /// every replay: whatever still reads it instead of the counter is a bug the tests catch).
  StepData inputs() const { return StepData(x0, index, labels, step_at_capture, counter); }

  /// Binds the reducer's gradient hooks to this step's stream (the emulation rebinds them too, on
  /// the CPU, so the tests cover the rebinding).
  void bind_stream() {
#ifdef UNIDIFF_WITH_CUDA
    if (!emulate) {
      stream = c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device.index());
      const c10::cuda::CUDAStreamGuard guard(*stream);
      group.reducer().rebind_hooks();
      return;
    }
#endif
    group.reducer().rebind_hooks();
  }

  /// Runs `work` on this step's stream, after what the current stream has queued; the current
  /// stream then waits for it. Without CUDA (the emulation), just runs it.
  template <typename Fn>
  void on_stream(Fn&& work) {
#ifdef UNIDIFF_WITH_CUDA
    if (!emulate) {
      const c10::cuda::CUDAStream current = c10::cuda::getCurrentCUDAStream(device.index());
      at::cuda::CUDAEvent ready;
      ready.record(current);
      ready.block(*stream);
      {
        const c10::cuda::CUDAStreamGuard guard(*stream);
        work();
      }
      at::cuda::CUDAEvent done;
      done.record(*stream);
      done.block(current);
      return;
    }
#endif
    work();
  }

  void capture(int64_t step) {
    step_at_capture = step;
    captured = true;
    if (emulate) return;
#ifdef UNIDIFF_WITH_CUDA
    // On this step's own stream (not the default stream, as CUDA requires).
    graph.reset();  // frees the previous graph's memory pool before the new one fills
    graph = std::make_unique<at::cuda::CUDAGraph>();
    on_stream([&] {
      // Autocast's cache of casted weights would outlive the capture: off while capturing.
      const bool cache = at::autocast::is_autocast_cache_enabled();
      at::autocast::set_autocast_cache_enabled(false);
      try {
        // Thread-local capture mode: the data loader's thread pins the next batches meanwhile
        // (pinned allocations query events), which global mode would refuse and which would
        // invalidate the capture; this thread makes no such call during the capture.
        graph->capture_begin({0, 0}, cudaStreamCaptureModeThreadLocal);
        loss = pretrain_step_kernels(group, objective, inputs(), seed, precision, channels_last);
        graph->capture_end();
      } catch (const std::exception& e) {
        at::autocast::set_autocast_cache_enabled(cache);
        UD_CHECK_INPUT(false, "--cuda_graph: the training step of ", objective.describe(),
                       " could not be captured in a CUDA graph (train without --cuda_graph): ", e.what());
      }
      at::autocast::set_autocast_cache_enabled(cache);
    });
#else
    UD_ASSERT(false, "a CUDA graph capture in a build without CUDA");
#endif
  }

  void replay() {
    if (emulate) {
      loss = pretrain_step_kernels(group, objective, inputs(), seed, precision, channels_last);
      return;
    }
#ifdef UNIDIFF_WITH_CUDA
    graph->replay();
#endif
  }
};

bool GraphedPretrainStep::available() {
#ifdef UNIDIFF_WITH_CUDA
  return true;
#else
  return false;
#endif
}

void GraphedPretrainStep::check_supported(torch::Device device, const dist::Communicator& comm) {
  UD_CHECK_INPUT(available(), "--cuda_graph needs a build with CUDA (this LibTorch has none)");
  UD_CHECK_INPUT(device.is_cuda(), "--cuda_graph needs a CUDA device; this run is on ", device.str());
  UD_CHECK_INPUT(comm.size() == 1 || comm.stream_ordered(), "--cuda_graph on several ranks needs NCCL (a build ",
                 "that found it): this job's ", comm.size(), " ranks communicate through ", comm.backend(),
                 ", whose collectives run on the host, outside any graph");
}

GraphedPretrainStep::GraphedPretrainStep(ModelGroup& group, PretrainObjective& objective, uint32_t seed,
                                         std::string precision, bool channels_last, int warmup, bool emulate) {
  const torch::Device device = group.reducer().param_shard(0).device();
  if (!emulate) check_supported(device, group.reducer().comm());
  UD_CHECK_INPUT(warmup >= 1, "a captured step needs at least one eager warm-up step, got ", warmup);
  state_ = std::make_unique<State>(group, objective, seed, std::move(precision), channels_last, warmup, device,
                                   emulate);
  state_->bind_stream();
}

GraphedPretrainStep::~GraphedPretrainStep() = default;

StepOutcome GraphedPretrainStep::run(const StepData& data) {
  State& s = *state_;
  const int64_t key = s.objective.prepare(data.step);
  const double lr = s.group.schedule(data.step);
  if (s.eager < s.warmup) {  // lazy initialisation and autotuning happen outside the graph
    ++s.eager;
    torch::Tensor loss;
    // On the capture's stream, so that per-stream state (cuBLAS workspaces, cuDNN plans) exists
    // before the capture.
    s.on_stream([&] { loss = pretrain_step_kernels(s.group, s.objective, data, s.seed, s.precision, s.channels_last); });
    return {loss, lr};
  }
  const bool fresh = s.allocate(data);
  s.load(data);
  if (fresh || !s.captured || key != s.key) {
    s.capture(data.step);
    s.key = key;
    ++captures_;
    if (!s.emulate) {
      log::info("train", detail::str_cat("step ", data.step + 1, ": the training step is captured in a CUDA graph",
                                         captures_ > 1 ? " again (the objective's tables changed)" : "",
                                         "; later steps replay it"));
    }
  }
  s.replay();
  return {s.loss, lr};
}

bool HostSyncTrap::available() { return GraphedPretrainStep::available(); }

HostSyncTrap::HostSyncTrap() {
#ifdef UNIDIFF_WITH_CUDA
  c10::cuda::warning_state().set_sync_debug_mode(c10::cuda::SyncDebugMode::L_ERROR);
#endif
}

HostSyncTrap::~HostSyncTrap() {
#ifdef UNIDIFF_WITH_CUDA
  c10::cuda::warning_state().set_sync_debug_mode(c10::cuda::SyncDebugMode::L_DISABLED);
#endif
}

}  // namespace unidiff::experiments
