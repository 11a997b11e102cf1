// The UNet training step, timed: unidiff's own step (experiments::pretrain_step, what `unidiff
// train` runs: the objective's loss, backward, the model group's reducer, AdamW and EMA) on the DDPM
// CIFAR-10 UNet (35,746,307 parameters) with batch 128 of 3x32x32, eps-prediction on the linear
// schedule. After --warmup steps, --steps steps are timed with CUDA events on a GPU (a
// synchronised steady clock on the CPU). Prints one RESULT line in the format of the plain-PyTorch
// peer (bench/unet_step.sh runs both and prints the table).
//   build/bench/unet_step_bench [--device=cuda|cpu] [--batch=128] [--steps=30] [--warmup=5]
//       [--precision=bf16|fp32] [--channels_last] [--cudnn_benchmark] [--cuda_graph] [--fused_group_norm] [--channels=128]
//       [--profile=N] [--arch=unet|mlp] [--work=train|ddim] [--ddim_steps=50]
// --cuda_graph runs the step as `unidiff train --cuda_graph` does (experiments/pretrain/graph_step.h): three
// eager steps, one capture, replays; the warm-up then covers at least those four steps.
// --fused_group_norm: the UNet's GroupNorm (+ time embedding) + SiLU pairs as one kernel each
// (models/group_norm_act.h), as `unidiff train --fused_group_norm`.
// --profile=N: after the timed steps, N more under LibTorch's profiler (Kineto; CUPTI on a GPU):
// the device time per step by kind of kernel (convolution, normalisation, attention, optimizer,
// element-wise, copies) and the top kernels, against the step's wall time (the rest is the GPU
// waiting for the host). On the CPU the rows are operators' inclusive times.
// One step of the CIFAR-10 configuration at batch 128 is 4.78 TFLOP (forward and backward, counted
// by PyTorch's FlopCounterMode on the peer); other batches scale it linearly, other widths are not
// counted.
// The peer's other figures (bench/peer_more.py), timed the same way:
// --arch=mlp: the toy MLP training step instead (2-D data, 3 hidden layers of 256, time embedding
//   128, batch 1024 unless --batch says otherwise): launch-bound work, where the host's cost per
//   kernel is the whole story. Ours also adds the projected time embedding in every layer and
//   keeps an EMA, which the peer's does not.
// --work=ddim: sampling instead of training: what `unidiff sample --sampler=ddim` runs
//   (experiments::draw_samples: the network in --precision, the sampler in float32), --ddim_steps
//   (50) network calls per batch of --batch (512) samples from a UNet with fresh weights, --steps
//   (3) batches timed after --warmup (1).
#include <sys/resource.h>

#include <ATen/Context.h>
#include <torch/csrc/autograd/profiler_kineto.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <algorithm>
#include <cctype>
#include <functional>
#include <map>
#include <set>
#include <chrono>
#include <memory>
#include <cstdio>
#include <cstring>
#include <string>

#include "core/error.h"
#include "core/memory.h"
#include "core/rng.h"
#include "dist/communicator.h"
#include "dist/world.h"
#include "experiments/config.h"
#include "experiments/pretrain/graph_step.h"
#include "experiments/run/model_group.h"
#include "experiments/pretrain/objectives.h"
#include "experiments/model_io.h"
#include "experiments/sample.h"
#include "experiments/pretrain/pretrain.h"
#include "models/network.h"
#include "models/precision.h"
#include "models/unet.h"

#ifdef UNIDIFF_BENCH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace {

namespace ud = unidiff;

struct Options {
  std::string device = "cuda", arch = "unet", work = "train";
  int64_t batch = 0, steps = 0, warmup = -1, channels = 128, profile = 0, ddim_steps = 50;  // 0, -1: by work
  std::string precision = "bf16";
  bool channels_last = false, cudnn_benchmark = false, cuda_graph = false, fused_group_norm = false;
};

bool flag(const char* arg, const char* name, std::string& value) {
  const size_t n = std::strlen(name);
  if (std::strncmp(arg, name, n) != 0 || arg[n] != '=') return false;
  value = arg + n + 1;
  return true;
}

/// The kind of a kernel (or operator) from its name: the first rule whose word it contains.
std::string kind_of(const std::string& name) {
  std::string n = name;
  std::transform(n.begin(), n.end(), n.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  static const std::vector<std::pair<std::string, std::vector<std::string>>> rules = {
      {"fused group norm (unidiff)", {"gn::cuda"}},
      {"normalisation (ATen)", {"group_norm", "groupnorm", "moments", "fusedparams", "internalgradients", "gammabeta"}},
      {"convolution", {"conv", "xmma", "cudnn", "implicit", "dgrad", "wgrad", "fprop", "nchwtonhwc", "nhwctonchw"}},
      {"attention", {"flash", "fmha", "attention", "softmax", "efficient"}},
      {"matmul", {"gemm", "cutlass", "cublas", "addmm", "matmul", "linear"}},
      {"optimizer + EMA", {"adam", "multi_tensor", "foreach", "lerp"}},
      {"copies, casts, fills", {"copy", "memcpy", "memset", "cast", "fill", "to_copy"}},
      {"reductions", {"reduce", "sum", "mean"}},
      {"element-wise", {"elementwise", "vectorized", "unrolled", "silu", "add", "mul", "where", "sigmoid"}}};
  for (const auto& [kind, words] : rules) {
    for (const auto& w : words) {
      if (n.find(w) != std::string::npos) return kind;
    }
  }
  return "other";
}

/// Runs `steps` under the profiler and prints where the time goes (per step).
void profile(bool cuda, int64_t n, double step_ms, const std::function<void()>& steps) {
  namespace prof = torch::profiler::impl;
  std::set<prof::ActivityType> activities{prof::ActivityType::CPU};
  if (cuda) activities.insert(prof::ActivityType::CUDA);
  const prof::ProfilerConfig config(prof::ProfilerState::KINETO);
  torch::autograd::profiler::prepareProfiler(config, activities);
  torch::autograd::profiler::enableProfiler(config, activities);
  steps();
  if (cuda) torch::cuda::synchronize();
  const auto result = torch::autograd::profiler::disableProfiler();
  const c10::DeviceType where = cuda ? c10::DeviceType::CUDA : c10::DeviceType::CPU;
  std::map<std::string, std::pair<double, int64_t>> by_name;  // total ns, calls
  for (const auto& e : result->events()) {
    if (e.deviceType() != where) continue;
    auto& [ns, calls] = by_name[e.name()];
    ns += static_cast<double>(e.durationNs());
    ++calls;
  }
  std::map<std::string, double> by_kind;
  double total = 0;
  std::vector<std::pair<double, std::string>> top;
  for (const auto& [name, v] : by_name) {
    by_kind[kind_of(name)] += v.first;
    total += v.first;
    top.emplace_back(v.first, name);
  }
  const double per = 1e6 * static_cast<double>(n);  // ns -> ms per step
  std::printf("\nPROFILE %s, %ld steps: %.2f ms of %s time per step (wall %.2f ms per step%s)\n",
              cuda ? "device kernels" : "CPU operators (inclusive: nested operators count twice)", n,
              total / per, cuda ? "kernel" : "operator", step_ms, cuda ? ", the rest is the GPU idle" : "");
  std::printf("| kind | ms/step | share |\n|---|---|---|\n");
  std::vector<std::pair<double, std::string>> kinds;
  for (const auto& [k, ns] : by_kind) kinds.emplace_back(ns, k);
  std::sort(kinds.rbegin(), kinds.rend());
  for (const auto& [ns, k] : kinds) std::printf("| %s | %.3f | %.1f%% |\n", k.c_str(), ns / per, 100 * ns / total);
  std::sort(top.rbegin(), top.rend());
  std::printf("\n| top kernel | calls/step | ms/step | kind |\n|---|---|---|---|\n");
  for (size_t i = 0; i < std::min<size_t>(top.size(), 15); ++i) {
    std::string name = top[i].second;
    if (name.size() > 90) name = name.substr(0, 87) + "...";
    std::printf("| %s | %.1f | %.3f | %s |\n", name.c_str(),
                static_cast<double>(by_name[top[i].second].second) / static_cast<double>(n), top[i].first / per,
                kind_of(top[i].second).c_str());
  }
}

/// Seconds since `t0`, after the device has finished its work.
double seconds_since(bool cuda, std::chrono::steady_clock::time_point t0) {
  if (cuda) torch::cuda::synchronize();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// --work=ddim: batches of DDIM samples through `unidiff sample`'s own path.
int run_ddim(const Options& o, torch::Device device, const ud::models::NetworkConfig& net_cfg,
             const ud::experiments::DiffusionConfig& diffusion, const std::shared_ptr<ud::models::Network>& model,
             int64_t params) {
  ud::experiments::LoadedModel m{net_cfg, diffusion, model, 0};
  ud::experiments::SampleConfig c;
  c.sampler = "ddim";
  c.steps = o.ddim_steps;
  c.num = o.batch;
  c.batch = o.batch;
  c.clip_x0 = "off";  // as the peer
  c.precision = o.precision;
  c.channels_last = o.channels_last;
  c.fused_group_norm = o.fused_group_norm;
  c.cudnn_benchmark = o.cudnn_benchmark;
  const bool cuda = device.is_cuda();
  torch::Tensor last;
  for (int64_t k = 0; k < o.warmup; ++k) last = ud::experiments::draw_samples(c, m, device);
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t k = 0; k < o.steps; ++k) {
    c.seed = static_cast<uint32_t>(k + 1);
    last = ud::experiments::draw_samples(c, m, device);
  }
  const double per_batch = seconds_since(cuda, t0) / static_cast<double>(o.steps);
  std::printf("RESULT unidiff work=ddim%ld device=%s precision=%s cl=%d cudnn_bench=%d fused_gn=%d params=%.2fM "
              "batch=%ld s_per_batch=%.3f img_per_s=%.1f finite=%d\n",
              o.ddim_steps, o.device.c_str(), o.precision.c_str(), o.channels_last ? 1 : 0, o.cudnn_benchmark ? 1 : 0,
              o.fused_group_norm ? 1 : 0, static_cast<double>(params) / 1e6, o.batch, per_batch,
              static_cast<double>(o.batch) / per_batch, torch::isfinite(last).all().item<bool>() ? 1 : 0);
  return 0;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string v;
    if (flag(argv[i], "--device", v)) o.device = v;
    else if (flag(argv[i], "--batch", v)) o.batch = std::stol(v);
    else if (flag(argv[i], "--steps", v)) o.steps = std::stol(v);
    else if (flag(argv[i], "--warmup", v)) o.warmup = std::stol(v);
    else if (flag(argv[i], "--channels", v)) o.channels = std::stol(v);
    else if (flag(argv[i], "--profile", v)) o.profile = std::stol(v);
    else if (flag(argv[i], "--precision", v)) o.precision = v;
    else if (flag(argv[i], "--arch", v)) o.arch = v;
    else if (flag(argv[i], "--work", v)) o.work = v;
    else if (flag(argv[i], "--ddim_steps", v)) o.ddim_steps = std::stol(v);
    else if (!std::strcmp(argv[i], "--channels_last")) o.channels_last = true;
    else if (!std::strcmp(argv[i], "--cudnn_benchmark")) o.cudnn_benchmark = true;
    else if (!std::strcmp(argv[i], "--cuda_graph")) o.cuda_graph = true;
    else if (!std::strcmp(argv[i], "--fused_group_norm")) o.fused_group_norm = true;
    else UD_CHECK_INPUT(false, "unet_step_bench: unknown argument '", argv[i], "'");
  }
  UD_CHECK_INPUT(o.device == "cuda" || o.device == "cpu", "--device must be cuda or cpu, got ", o.device);
  UD_CHECK_INPUT(o.arch == "unet" || o.arch == "mlp", "--arch must be unet or mlp, got ", o.arch);
  UD_CHECK_INPUT(o.work == "train" || o.work == "ddim", "--work must be train or ddim, got ", o.work);
  UD_CHECK_INPUT(o.work == "train" || o.arch == "unet", "--work=ddim samples from the unet");
  UD_CHECK_INPUT(o.work == "train" || (!o.cuda_graph && o.profile == 0), "--cuda_graph and --profile time training");
  UD_CHECK_INPUT(o.arch == "unet" || (!o.channels_last && !o.fused_group_norm), "the mlp has no images or norms");
  const bool ddim = o.work == "ddim";
  if (o.batch == 0) o.batch = ddim ? 512 : o.arch == "mlp" ? 1024 : 128;
  if (o.steps == 0) o.steps = ddim ? 3 : o.arch == "mlp" ? 200 : 30;
  if (o.warmup < 0) o.warmup = ddim ? 1 : o.arch == "mlp" ? 20 : 5;
  UD_CHECK_INPUT(o.batch > 0 && o.steps > 0 && o.ddim_steps > 0, "--batch, --steps and --ddim_steps must be positive");
  ud::models::validate_precision(o.precision);
  if (o.cuda_graph) o.warmup = std::max<int64_t>(o.warmup, 5);
  return o;
}

int run(const Options& o) {
  const bool cuda = o.device == "cuda";
  UD_CHECK_INPUT(!cuda || torch::cuda::is_available(), "--device=cuda but no CUDA device is visible");
  const torch::Device device = cuda ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
  at::globalContext().setBenchmarkCuDNN(o.cudnn_benchmark);
  auto comm = ud::dist::make_communicator(device);

  ud::models::NetworkConfig net_cfg;
  net_cfg.arch = o.arch;
  if (o.arch == "unet") {
    net_cfg.data_shape = {3, 32, 32};
    net_cfg.channels = o.channels;  // the rest is the DDPM CIFAR-10 default: 1,2,2,2, 2 blocks, attention at 16
  } else {
    net_cfg.data_shape = {2};
    net_cfg.hidden = 256;
    net_cfg.layers = 3;
    net_cfg.time_dim = 128;
  }
  torch::manual_seed(0);
  auto model = ud::models::make_network(net_cfg);
  int64_t params = 0;
  for (const auto& p : model->parameters()) params += p.numel();
  model->to(device);
  ud::models::set_channels_last(*model, o.channels_last);
  ud::models::set_fused_group_norm(*model, o.fused_group_norm);

  ud::experiments::DiffusionConfig diffusion;  // DDPM, eps-prediction, linear, T = 1000
  diffusion = ud::experiments::resolve_diffusion(diffusion);
  if (o.work == "ddim") return run_ddim(o, device, net_cfg, diffusion, model, params);
  const int64_t total = o.warmup + o.steps + o.profile;
  auto objective = ud::experiments::make_pretrain_objective(diffusion, {0, total, net_cfg.data_shape, device});
  ud::experiments::OptimConfig optim;
  optim.lr = 2e-4;
  optim.warmup_steps = 0;
  optim.decay = "constant";
  optim.grad_clip = 0;  // as the peer (no clipping); the EMA is extra work the peer does not do
  optim.ema_decay = 0.9999;
  ud::experiments::ModelGroup group("model", ud::experiments::ModelGroup::Role::kTrained, model, *comm, optim, {},
                                    total);
  // One fixed batch on the device (the loader is benchmarked on its own: loader_bench).
  const torch::Tensor x0 =
      ud::rng::normal({7, ud::rng::Purpose::kNoise}, 0, torch::arange(o.batch), net_cfg.data_shape, device);
  const torch::Tensor index = torch::arange(o.batch, torch::TensorOptions().dtype(torch::kInt64).device(device));
  torch::Tensor loss_sum = torch::zeros({}, torch::TensorOptions().device(device));
  std::unique_ptr<ud::experiments::GraphedPretrainStep> graphed;
  if (o.cuda_graph) {
    graphed = std::make_unique<ud::experiments::GraphedPretrainStep>(group, *objective, 0, o.precision, o.channels_last);
  }
  const auto step = [&](int64_t k) {
    const ud::experiments::StepData data(x0, index, {}, k);
    loss_sum += graphed ? graphed->run(data).loss
                        : ud::experiments::pretrain_step(group, *objective, data, 0, o.precision, o.channels_last).loss;
  };
  for (int64_t k = 0; k < o.warmup; ++k) step(k);
  double seconds = 0;
  int64_t peak_bytes = 0;
  if (cuda) {
#ifdef UNIDIFF_BENCH_CUDA
    torch::cuda::synchronize();
    c10::cuda::CUDACachingAllocator::resetPeakStats(0);
    at::cuda::CUDAEvent start(cudaEventDefault), stop(cudaEventDefault);
    start.record();
    for (int64_t k = o.warmup; k < o.warmup + o.steps; ++k) step(k);
    stop.record();
    stop.synchronize();
    seconds = start.elapsed_time(stop) / 1e3;
    peak_bytes = c10::cuda::CUDACachingAllocator::getDeviceStats(0).allocated_bytes[0].peak;
#else
    UD_CHECK_INPUT(false, "this unet_step_bench was built without CUDA");
#endif
  } else {
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t k = o.warmup; k < o.warmup + o.steps; ++k) step(k);
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    peak_bytes = static_cast<int64_t>(usage.ru_maxrss) * 1024;
  }
  const double per_step = seconds / static_cast<double>(o.steps);
  if (o.profile > 0) {
    profile(cuda, o.profile, 1e3 * per_step, [&] {
      for (int64_t k = o.warmup + o.steps; k < total; ++k) step(k);
    });
  }
  const bool counted = o.arch == "unet" && o.channels == 128;
  const double flops = counted ? 4.78e12 * static_cast<double>(o.batch) / 128.0 : 0.0;
  const double loss = loss_sum.item<double>() / static_cast<double>(total);
  std::printf("RESULT unidiff arch=%s us_per_step=%.0f device=%s precision=%s cl=%d cudnn_bench=%d graph=%d fused_gn=%d params=%.2fM batch=%ld step_ms=%.2f "
              "img_per_s=%.0f tflops=%.1f peak_mem_mb=%.0f%s loss=%.4f\n",
              o.arch.c_str(), 1e6 * per_step, o.device.c_str(), o.precision.c_str(), o.channels_last ? 1 : 0,
              o.cudnn_benchmark ? 1 : 0,
              o.cuda_graph ? 1 : 0, o.fused_group_norm ? 1 : 0,
              static_cast<double>(params) / 1e6, o.batch, 1e3 * per_step, static_cast<double>(o.batch) / per_step,
              counted ? flops / per_step / 1e12 : 0.0, static_cast<double>(peak_bytes) / (1 << 20),
              cuda ? "" : " (peak RSS)", loss);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  ud::memory::keep_freed_pages();
  ud::dist::init(&argc, &argv);
  int rc = 0;
  try {
    const Options o = parse(argc, argv);
    if (o.device == "cpu") ud::dist::configure_threads();
    rc = run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "unet_step_bench: %s\n", e.what());
    rc = 2;
  }
  ud::dist::finalize();
  return rc;
}
