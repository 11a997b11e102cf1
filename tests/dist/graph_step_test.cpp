// The training step captured in a CUDA graph (experiments/graph_step.h) against the eager step:
// the same parameters, EMA and optimizer counts after steps that cross warm-up, capture, replays
// and (iCT) re-captures when the curriculum moves. On the CPU the replays are emulated (the
// kernels rerun with the host values frozen at "capture" and the live device buffers), which must
// give the eager result bit for bit, on several ranks through a stream-ordered communicator; the
// real graphs run on the GPU host (one rank, with and without NCCL collectives) and are skipped
// elsewhere; the refusals run everywhere.
#include <gtest/gtest.h>
#include <torch/cuda.h>

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
#include "experiments/graph_step.h"
#include "experiments/model_group.h"
#include "experiments/objective.h"
#include "experiments/train_diffusion.h"
#include "models/network.h"

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
};

/// Trains `c` for c.steps on `device`, eagerly or through GraphedPretrainStep; returns the group.
/// Each rank takes its own c.batch samples of every step.
std::unique_ptr<ModelGroup> train(const Case& c, const dist::Communicator& comm, torch::Device device, bool graph,
                                  int* captures, bool emulate = false, const DistConfig& dist = {}) {
  torch::manual_seed(3);
  auto net = models::make_network(c.net);
  net->to(device);
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
  if (graph) graphed = std::make_unique<GraphedPretrainStep>(*group, *objective, 5, c.precision, false, 3, emulate);
  for (int64_t step = 0; step < c.steps; ++step) {
    const int64_t first = (step * comm.size() + comm.rank()) * c.batch;
    const torch::Tensor index = torch::arange(first, first + c.batch, torch::kInt64);
    const torch::Tensor x0 =
        rng::normal({9, rng::Purpose::kDataGen}, 0, index, c.net.data_shape, device).clamp(-1, 1);
    torch::Tensor labels;
    if (c.num_classes > 0) labels = index.remainder(c.num_classes + 1).to(device);  // K: no class
    const StepData data(x0, index.to(device), labels, step);
    if (graph) {
      graphed->run(data);
    } else {
      pretrain_step(*group, *objective, data, 5, c.precision, false);
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

}  // namespace
}  // namespace unidiff::experiments
