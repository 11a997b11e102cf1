// The training step captured in a CUDA graph (experiments/pretrain/graph_step.h) against the eager step:
// the same parameters, EMA and optimizer counts after steps that cross warm-up, capture, replays
// and (iCT) re-captures when the curriculum moves. On the CPU the replays are emulated (the
// kernels rerun with the host values frozen at "capture" and the live device buffers), which must
// give the eager result bit for bit, on several ranks through a stream-ordered communicator; the
// real graphs run on the GPU host (one rank, with and without NCCL collectives) and are skipped
// elsewhere; the refusals run everywhere.
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include <ATen/record_function.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "dist/communicator.h"
#include "dist/gradients.h"
#include "deferred_communicator.h"
#include "experiments/distill/progressive.h"
#include "experiments/pretrain/graph_step.h"
#include "experiments/run/model_group.h"
#include "experiments/pretrain/objectives.h"
#include "experiments/pretrain/pretrain.h"
#include "models/group_norm_act.h"
#include "models/network.h"
#include "models/precision.h"
#include "models/unet.h"
#include "objectives/distill/progressive.h"
#include "objectives/schedule.h"

namespace unidiff::experiments {
namespace {

/// A communicator that only answers what check_supported asks.
class Described final : public dist::Communicator {
 public:
  Described(int size, bool stream_ordered) : size_(size), stream_ordered_(stream_ordered) {}
  int rank() const override { return 0; }
  int size() const override { return size_; }
  std::string backend() const override { return stream_ordered_ ? "nccl-like" : "mpi-like"; }
  void all_reduce(torch::Tensor&, dist::ReduceOp) override { unused(); }
  void broadcast(torch::Tensor&, int) override { unused(); }
  torch::Tensor all_gather(const torch::Tensor&) override { unused(); }
  void all_gather_inplace(torch::Tensor&) override { unused(); }
  torch::Tensor reduce_scatter(torch::Tensor&, dist::ReduceOp) override { unused(); }
  void barrier() override { unused(); }
  std::unique_ptr<dist::Communicator> duplicate() const override { unused(); }
  bool supports_background_thread() const override { return true; }
  bool stream_ordered() const override { return stream_ordered_; }

 private:
  [[noreturn]] static void unused() { throw std::logic_error("not a real communicator"); }
  int size_;
  bool stream_ordered_;
};

TEST(CudaGraph, RefusedWithoutACudaDeviceOrOnSeveralRanksWithoutNccl) {
  const torch::Device cuda(torch::kCUDA, 0);
  EXPECT_THROW(GraphedPretrainStep::check_supported(torch::kCPU, Described(1, false)), InputError);
  EXPECT_THROW(GraphedPretrainStep::check_supported(torch::kCPU, Described(2, true)), InputError);
  EXPECT_THROW(GraphedPretrainStep::check_supported(cuda, Described(2, false)), InputError);
  if (GraphedPretrainStep::available()) {  // what the build and the communicator allow
    EXPECT_NO_THROW(GraphedPretrainStep::check_supported(cuda, Described(1, false)));
    EXPECT_NO_THROW(GraphedPretrainStep::check_supported(cuda, Described(3, true)));
  }
}

struct Case {
  std::string name;
  models::NetworkConfig net;
  DiffusionConfig diffusion;
  std::string precision;
  int64_t batch;
  int64_t steps;
  int64_t num_classes;
  bool channels_last = false;     ///< the network's weights and the images in NHWC
  bool fused_group_norm = false;  ///< the UNet's fused GroupNorm + SiLU kernels (CUDA)
};

/// Something held from a given step to the end of train() (a HostSyncTrap, a HostReads).
struct Watch {
  int64_t from = -1;                       ///< the step it starts before (-1: never)
  std::function<std::shared_ptr<void>()> make;
};

/// Trains `c` for c.steps on `device`, eagerly or through GraphedPretrainStep; returns the group.
/// Each rank takes its own c.batch samples of every step, made on the device.
std::unique_ptr<ModelGroup> train(const Case& c, const dist::Communicator& comm, torch::Device device, bool graph,
                                  int* captures, bool emulate = false, const DistConfig& dist = {},
                                  const Watch& watch = {}) {
  torch::manual_seed(3);
  auto net = models::make_network(c.net);
  net->to(device);
  models::set_channels_last(*net, c.channels_last);
  if (c.fused_group_norm) models::set_fused_group_norm(*net, true);
  OptimConfig optim;
  optim.lr = 1e-3;
  optim.warmup_steps = 2;
  optim.decay = "cosine";
  optim.grad_clip = 1.0;
  optim.ema_decay = 0.99;
  auto group = std::make_unique<ModelGroup>("model", ModelGroup::Role::kTrained, net, comm, optim, dist, c.steps);
  const DiffusionConfig resolved = resolve_diffusion(c.diffusion);
  auto objective = make_pretrain_objective(resolved, {5, c.steps, c.net.data_shape, device});
  std::unique_ptr<GraphedPretrainStep> graphed;
  if (graph) {
    graphed = std::make_unique<GraphedPretrainStep>(*group, *objective, 5, c.precision, c.channels_last, 3, emulate);
  }
  std::shared_ptr<void> watching;
  for (int64_t step = 0; step < c.steps; ++step) {
    if (step == watch.from) watching = watch.make();
    const int64_t first = (step * comm.size() + comm.rank()) * c.batch;
    const torch::Tensor index = torch::arange(first, first + c.batch, torch::dtype(torch::kInt64).device(device));
    const torch::Tensor x0 =
        rng::normal({9, rng::Purpose::kDataGen}, 0, index, c.net.data_shape, device).clamp(-1, 1);
    torch::Tensor labels;
    if (c.num_classes > 0) labels = index.remainder(c.num_classes + 1);  // K: no class
    const StepData data(x0, index, labels, step);
    if (graph) {
      graphed->run(data);
    } else {
      pretrain_step(*group, *objective, data, 5, c.precision, c.channels_last);
    }
  }
  if (graph) *captures = graphed->captures();
  return group;
}

Case small_unet(const std::string& precision) {
  Case unet{"unet ddpm " + precision + ", dropout, classes", {}, {}, precision, 8, 9, 3};
  unet.net.arch = "unet";
  unet.net.data_shape = {3, 16, 16};
  unet.net.channels = 32;
  unet.net.channel_mult = {1, 2};
  unet.net.res_blocks = 1;
  unet.net.attn_res = {8};
  unet.net.dropout = 0.1;
  unet.net.num_classes = 3;
  return unet;
}

Case mlp(const std::string& objective, int64_t steps) {
  Case c{"mlp " + objective, {}, {}, "fp32", 64, steps, 0};
  c.net.data_shape = {2};
  c.net.hidden = 64;
  c.diffusion.objective = objective;
  return c;
}

TEST(CudaGraph, EmulatedReplaysMatchEagerStepsBitForBit) {
  // On several ranks through a stream-ordered communicator, as NCCL is (the reducer's collectives
  // are part of the step); on one, with none.
  std::unique_ptr<dist::Communicator> world = dist::make_world_communicator();
  if (world->size() > 1) world = std::make_unique<dist::DeferredCommunicator>(std::move(world));
  // iCT over 24 steps with s0 = 10, s1 = 1280 doubles its intervals every floor(24 / (log2(128) + 1))
  // = 3 steps (10, 20, ..., 1280: 8 stages); after the 3 eager steps, stages start at steps 3, 6,
  // ..., 21: 7 captures. Every other objective keeps one graph.
  for (const Case& c : {small_unet("fp32"), mlp("ddpm", 9), mlp("ict", 24), mlp("scm", 9), mlp("rf", 9)}) {
    int captures = 0;
    const auto eager = train(c, *world, torch::kCPU, false, nullptr);
    const auto graphed = train(c, *world, torch::kCPU, true, &captures, /*emulate=*/true);
    EXPECT_EQ(captures, c.diffusion.objective == "ict" ? 7 : 1) << c.name;
    EXPECT_EQ(graphed->optimizer().steps(), c.steps) << c.name;
    EXPECT_EQ(graphed->ema().updates(), c.steps) << c.name;
    if (world->size() > 1) {
      const auto& deferred = dynamic_cast<const dist::DeferredCommunicator&>(graphed->reducer().comm());
      EXPECT_EQ(deferred.joins(), c.steps) << c.name;  // every step's buckets went through it
    }
    const auto a = eager->net().parameters(), b = graphed->net().parameters();
    ASSERT_EQ(a.size(), b.size());
    EXPECT_EQ(dist::max_divergence(b, *world), 0.0) << c.name << ": replicas differ";
    for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << c.name << ": parameter " << i;
    for (size_t i = 0; i < eager->ema().shadow().size(); ++i) {
      EXPECT_TRUE(torch::equal(eager->ema().shadow()[i].second, graphed->ema().shadow()[i].second))
          << c.name << ": EMA of " << eager->ema().shadow()[i].first;
    }
  }
}

TEST(CudaGraph, ReplayedStepsMatchEagerSteps) {
  auto world = dist::make_world_communicator();
  if (!torch::cuda::is_available() || world->size() != 1 || !GraphedPretrainStep::available()) {
    GTEST_SKIP() << "needs one rank and a CUDA device (the GPU host)";
  }
  const torch::Device cuda(torch::kCUDA, 0);
  auto comm = dist::make_communicator(cuda);
  // On one GPU the reducer normally has nothing to send; communicate_alone runs its NCCL
  // collectives anyway (started from the gradient hooks, joined in finalize; ZeRO-1's
  // reduce-scatter and all-gather), so that they are captured and replayed here too.
  DistConfig nccl;
  nccl.communicate_alone = true;
  nccl.bucket_mb = 0.25;  // several buckets
  DistConfig nccl_zero = nccl;
  nccl_zero.zero = true;
  struct Run {
    Case c;
    DistConfig dist;
    const char* how;
  };
  std::vector<Run> runs;
  for (const Case& c : {small_unet("bf16"), mlp("ict", 24), mlp("scm", 9), mlp("rf", 9)}) runs.push_back({c, {}, ""});
  if (comm->stream_ordered()) {
    runs.push_back({small_unet("bf16"), nccl, ", NCCL collectives"});
    runs.push_back({small_unet("bf16"), nccl_zero, ", NCCL ZeRO-1"});
    runs.push_back({mlp("rf", 9), nccl, ", NCCL collectives"});
  }
  for (Run& run : runs) {
    Case& c = run.c;
    c.name += run.how;
    int captures = 0;
    const auto eager = train(c, *comm, cuda, false, nullptr, false, run.dist);
    const auto graphed = train(c, *comm, cuda, true, &captures, false, run.dist);
    EXPECT_GE(captures, 1) << c.name;
    EXPECT_EQ(captures, c.diffusion.objective == "ict" ? 7 : 1) << c.name;
    EXPECT_EQ(graphed->optimizer().steps(), c.steps) << c.name;
    EXPECT_EQ(graphed->ema().updates(), c.steps) << c.name;
    const auto a = eager->net().parameters(), b = graphed->net().parameters();
    ASSERT_EQ(a.size(), b.size());
    double worst = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      worst = std::max(worst, (a[i] - b[i]).abs().max().item<double>());
      EXPECT_TRUE(torch::allclose(a[i], b[i], 1e-4, 1e-5)) << c.name << ": parameter " << i;
    }
    for (size_t i = 0; i < eager->ema().shadow().size(); ++i) {
      EXPECT_TRUE(torch::allclose(eager->ema().shadow()[i].second, graphed->ema().shadow()[i].second, 1e-4, 1e-5))
          << c.name << ": EMA of " << eager->ema().shadow()[i].first;
    }
    std::printf("[ graph    ] %s: %d capture(s), largest parameter difference %.3g\n", c.name.c_str(), captures,
                worst);
  }
}

/// Runs `steps` student steps of a progressive-distillation round of 4 steps (x0-predicting MLPs
/// as teacher and student, linear DDPM schedule) on `device`, each rank on its own samples.
void distill(const dist::Communicator& comm, torch::Device device, int64_t steps, const Watch& watch) {
  torch::manual_seed(3);
  models::NetworkConfig net;
  net.data_shape = {2};
  net.hidden = 64;
  auto teacher = models::make_network(net);
  auto student_net = models::make_network(net);
  teacher->to(device);
  student_net->to(device);
  OptimConfig optim;
  optim.lr = 1e-3;
  optim.grad_clip = 1.0;
  optim.ema_decay = 0.99;
  ModelGroup student("student", ModelGroup::Role::kTrained, student_net, comm, optim, {}, steps);
  // The tables on the device, as progressive distillation puts them.
  const objectives::Schedule schedule = objectives::Schedule::from_ddpm(
      objectives::DdpmSchedule::make(objectives::BetaSchedule::kLinear, 1000).to(device));
  const objectives::X0Fn teacher_x0 = [&](const torch::Tensor& z, const torch::Tensor& t) {
    return teacher->forward(z, t);
  };
  const objectives::X0Fn student_x0 = [&](const torch::Tensor& z, const torch::Tensor& t) {
    return student.net().forward(z, t);
  };
  std::shared_ptr<void> watching;
  for (int64_t step = 0; step < steps; ++step) {
    if (step == watch.from) watching = watch.make();
    const int64_t first = (step * comm.size() + comm.rank()) * 32;
    const torch::Tensor index = torch::arange(first, first + 32, torch::dtype(torch::kInt64).device(device));
    const torch::Tensor x0 = rng::normal({9, rng::Purpose::kDataGen}, 0, index, {2}, device).clamp(-1, 1);
    progressive_step(student, teacher_x0, student_x0, schedule, x0, index, 4, 5, step, step);
  }
  ASSERT_EQ(student.optimizer().steps(), steps);
}

/// Records the operators run by this thread (and the backward passes it starts) that read a
/// tensor's value on the host: item() and bool conversions, nonzero and what is built on it
/// (boolean-mask indexing, masked_select, unique), equal. On a GPU each of them makes the host wait
/// for the device. Not counted: reads inside operators whose CPU implementation reads host values
/// that their CUDA implementation keeps on the device (ATen's fused AdamW reads its step and
/// learning rate; unidiff's keyed draws their step counter), and inside unidiff's named host-side
/// scopes (RECORD_FUNCTION("unidiff::..."): host arithmetic on host tables).
class HostReads {
 public:
  HostReads() {
    active_ = this;
    exempt_depth_ = 0;
    handle_ = at::addThreadLocalCallback(
        at::RecordFunctionCallback(&HostReads::on_start, &HostReads::on_end).scopes({at::RecordScope::FUNCTION}));
  }
  ~HostReads() {
    at::removeCallback(handle_);
    active_ = nullptr;
  }
  HostReads(const HostReads&) = delete;
  HostReads& operator=(const HostReads&) = delete;
  const std::vector<std::string>& seen() const { return seen_; }
  bool saw(const std::string& op) const { return std::find(seen_.begin(), seen_.end(), op) != seen_.end(); }

 private:
  static bool exempt(const std::string& op) {
    return op.rfind("unidiff::", 0) == 0 || op == "aten::_fused_adamw_" || op == "aten::_fused_adam_";
  }
  static std::unique_ptr<at::ObserverContext> on_start(const at::RecordFunction& fn) {
    static const std::vector<std::string> reads{"aten::_local_scalar_dense", "aten::item",  "aten::is_nonzero",
                                                "aten::nonzero",             "aten::masked_select",
                                                "aten::_unique2",            "aten::unique_dim",
                                                "aten::unique_consecutive",  "aten::equal"};
    const std::string op = fn.name();
    if (active_ != nullptr && exempt_depth_ == 0 && std::find(reads.begin(), reads.end(), op) != reads.end()) {
      active_->seen_.push_back(op);
    }
    if (exempt(op)) ++exempt_depth_;
    return nullptr;
  }
  static void on_end(const at::RecordFunction& fn, at::ObserverContext*) {
    if (exempt(fn.name())) --exempt_depth_;
  }
  static inline thread_local HostReads* active_ = nullptr;
  static inline thread_local int exempt_depth_ = 0;
  at::CallbackHandle handle_ = 0;
  std::vector<std::string> seen_;
};

TEST(PretrainStep, ReadsNoValueBackToTheHost) {
  // The half of "the step never waits for the GPU" that a CPU run can see (PretrainStep.
  // NeverWaitsForTheGpu checks the whole on the GPU host): after the first steps, no operator of
  // the step reads a value on the host, eagerly or in an (emulated) graph replay, on any number of
  // ranks. (The reducer's MPI thread is not watched: with NCCL there is none.)
  {  // The probe sees what it must.
    HostReads probe;
    EXPECT_EQ(torch::ones({1}).item<float>(), 1.0f);
    EXPECT_TRUE(probe.saw("aten::_local_scalar_dense"));
    const torch::Tensor x = torch::arange(4);
    EXPECT_EQ(x.index({x > 1}).size(0), 2);
    EXPECT_TRUE(probe.saw("aten::nonzero"));
  }
  std::unique_ptr<dist::Communicator> world = dist::make_world_communicator();
  if (world->size() > 1) world = std::make_unique<dist::DeferredCommunicator>(std::move(world));
  DistConfig zero;
  zero.zero = true;
  zero.bucket_mb = 0.05;  // several buckets
  const std::vector<std::pair<Case, DistConfig>> cases{
      {small_unet("fp32"), {}}, {small_unet("fp32"), zero}, {mlp("ddpm", 6), {}},
      {mlp("ict", 6), {}},      {mlp("scm", 6), {}},        {mlp("rf", 6), {}}};
  for (const bool graph : {false, true}) {
    for (const auto& [c, dist] : cases) {
      const std::string name = c.name + (dist.zero ? ", ZeRO-1" : "") + (graph ? ", graph" : "");
      std::shared_ptr<HostReads> probe;
      int captures = 0;
      // Eager: from the third step on; graph: the replays (3 eager warm-up steps, the 4th captured).
      const Watch watch{graph ? 4 : 2, [&probe] { return probe = std::make_shared<HostReads>(); }};
      train(c, *world, torch::kCPU, graph, &captures, /*emulate=*/true, dist, watch);
      ASSERT_TRUE(probe);
      std::string ops;
      for (const std::string& op : probe->seen()) ops += " " + op;
      EXPECT_TRUE(probe->seen().empty()) << name << " reads on the host:" << ops;
    }
  }
  {  // A progressive-distillation student step (teacher half steps, schedule coefficients).
    std::shared_ptr<HostReads> probe;
    distill(*world, torch::kCPU, 5, {2, [&probe] { return probe = std::make_shared<HostReads>(); }});
    ASSERT_TRUE(probe);
    std::string ops;
    for (const std::string& op : probe->seen()) ops += " " + op;
    EXPECT_TRUE(probe->seen().empty()) << "progressive distillation reads on the host:" << ops;
  }
}

TEST(PretrainStep, NeverWaitsForTheGpu) {
  // The training loop reads the loss once per logging window; the step itself (the objective's
  // draws and loss, backward, the reducer, clipping, AdamW, EMA, and the host work around a
  // graph replay) must only queue work, or the GPU idles while the host catches up.
  auto world = dist::make_world_communicator();
  if (!torch::cuda::is_available() || world->size() != 1 || !HostSyncTrap::available()) {
    GTEST_SKIP() << "needs one rank and a CUDA device (the GPU host)";
  }
  const torch::Device cuda(torch::kCUDA, 0);
  {  // The trap itself: reading a device value throws while it is set, and only then.
    const torch::Tensor one = torch::ones({1}, torch::TensorOptions().device(cuda));
    {
      const HostSyncTrap trap;
      EXPECT_THROW(one.item<float>(), c10::Error);
    }
    EXPECT_EQ(one.item<float>(), 1.0f);
  }
  auto comm = dist::make_communicator(cuda);
  DistConfig nccl;
  nccl.communicate_alone = true;  // the reducer's NCCL collectives on one rank
  nccl.bucket_mb = 0.25;
  DistConfig nccl_zero = nccl;
  nccl_zero.zero = true;
  Case fast = small_unet("bf16");
  fast.name += ", channels-last";
  fast.channels_last = true;
  if (models::fused_group_norm_available(torch::kCUDA)) {
    fast.name += ", fused norms";
    fast.fused_group_norm = true;
  }
  struct Run {
    Case c;
    DistConfig dist;
    bool graph;
  };
  std::vector<Run> runs{{small_unet("bf16"), {}, false}, {small_unet("fp32"), {}, false}, {fast, {}, false},
                        {mlp("ddpm", 6), {}, false},     {mlp("ict", 6), {}, false},    {mlp("scm", 6), {}, false},
                        {mlp("rf", 6), {}, false},       {small_unet("bf16"), {}, true}, {fast, {}, true}};
  if (comm->stream_ordered()) {
    runs.push_back({small_unet("bf16"), nccl, false});
    runs.push_back({small_unet("bf16"), nccl_zero, false});
    runs.push_back({small_unet("bf16"), nccl, true});
  }
  const bool benchmark = at::globalContext().benchmarkCuDNN();
  at::globalContext().setBenchmarkCuDNN(true);  // autotuning syncs, but only in the first steps
  for (const Run& run : runs) {
    const std::string name = run.c.name + (run.graph ? ", CUDA graph" : "") +
                             (run.dist.communicate_alone ? (run.dist.zero ? ", NCCL ZeRO-1" : ", NCCL") : "");
    // Eager: from the third step (after lazy initialisation and autotuning); graph: the replays
    // after the capture (3 eager warm-up steps, the 4th captured).
    const int64_t trap_from = run.graph ? 4 : 2;
    int captures = 0;
    try {
      const auto group = train(run.c, *comm, cuda, run.graph, &captures, false, run.dist,
                               {trap_from, [] { return std::make_shared<HostSyncTrap>(); }});
      EXPECT_EQ(group->optimizer().steps(), run.c.steps) << name;
      std::printf("[ no sync  ] %s: %ld steps, none waited\n", name.c_str(),
                  static_cast<long>(run.c.steps - trap_from));
    } catch (const c10::Error& e) {
      ADD_FAILURE() << name << ": a step waited for the GPU: " << e.what();
    }
  }
  at::globalContext().setBenchmarkCuDNN(benchmark);
  try {  // From the third step on, as the eager runs above.
    distill(*comm, cuda, 6, {2, [] { return std::make_shared<HostSyncTrap>(); }});
    std::printf("[ no sync  ] progressive distillation: 4 steps, none waited\n");
  } catch (const c10::Error& e) {
    ADD_FAILURE() << "progressive distillation: a step waited for the GPU: " << e.what();
  }
}

}  // namespace
}  // namespace unidiff::experiments
