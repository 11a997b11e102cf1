// Data parallelism: after the reducer, each rank's gradient equals the gradient of one process on
// the whole global batch, for every reducer mode (overlapped buckets, one bucket in finalize,
// ZeRO-1); replicas stay identical through optimizer steps and match torch::optim::AdamW with
// clipping in one process; micro-batch accumulation and unused parameters; and the training loop
// run under mpirun keeps its replicas in sync.
#include <gtest/gtest.h>

#include <limits>

#include <torch/cuda.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/variable.h>

#include <filesystem>

#include "core/error.h"
#include "core/fs.h"
#include "core/rng.h"
#include "data/dataset.h"
#include "data/toy.h"
#include "dist/communicator.h"
#include "dist/flat_adamw.h"
#include "dist/gradients.h"
#include "dist/reducer.h"
#include "dist/world.h"
#include "deferred_communicator.h"
#include "experiments/run/run.h"
#include "models/network.h"
#include "models/precision.h"
#include "../unit/test_util.h"

namespace unidiff::dist {
namespace {

constexpr int64_t kGlobalBatch = 12;  // divisible by 1, 2, 3

std::shared_ptr<models::Network> make_mlp(uint64_t seed) {
  models::NetworkConfig c;
  c.data_shape = {2};
  c.hidden = 32;
  c.layers = 2;
  c.time_dim = 8;
  torch::manual_seed(seed);
  return models::make_network(c);
}

/// The global batch of step k: identical on every rank (keyed by sample index).
std::pair<torch::Tensor, torch::Tensor> global_batch(int64_t step) {
  const torch::Tensor idx = rng::arange_indices(0, kGlobalBatch);
  const torch::Tensor x = rng::normal({3, rng::Purpose::kNoise}, static_cast<uint64_t>(step), idx, {2});
  const torch::Tensor t = rng::randint({3, rng::Purpose::kTimestep}, static_cast<uint64_t>(step), idx, 1000)
                              .to(torch::kFloat32);
  return {x, t};
}

torch::Tensor loss_of(models::Network& net, const torch::Tensor& x, const torch::Tensor& t) {
  return (net.forward(x, t) - x).pow(2).mean();
}

/// This rank's rows: r, r + W, r + 2W, ... (the sampler's sharding rule).
torch::Tensor my_rows(const torch::Tensor& full, const Communicator& comm) {
  return full.index_select(0, torch::arange(comm.rank(), kGlobalBatch, comm.size(), torch::kInt64));
}

struct Mode {
  const char* name;
  ReducerOptions options;
  bool stream_ordered = false;  ///< through a DeferredCommunicator (the NCCL reducer's path)
};

/// Small buckets (several per model) with overlap (on the MPI thread, or started from the hooks
/// through a stream-ordered communicator, which also runs on one rank); one bucket reduced in
/// finalize (the simple reducer); ZeRO-1 with each.
std::vector<Mode> modes() {
  return {{"bucketed+overlap", {2048, true, false}},
          {"simple", {int64_t{1} << 40, false, false}},
          {"zero1+overlap", {2048, true, true}},
          {"zero1", {int64_t{1} << 40, false, true}},
          {"bucketed+overlap stream-ordered", {2048, true, false, true}, true},
          {"zero1+overlap stream-ordered", {2048, true, true, true}, true}};
}

/// The communicator a mode's reducer is built on (it duplicates it).
std::unique_ptr<Communicator> reducer_comm(const Mode& mode) {
  if (mode.stream_ordered) return std::make_unique<DeferredCommunicator>(make_world_communicator());
  return make_world_communicator();
}

/// The stream-ordered reducer started every bucket from the gradient hooks during backward
/// (`started_in_backward`: none were left for finalize) and joined them in finalize once a step.
void expect_started_in_backward(Reducer& reducer, int64_t pending_after_backward, int64_t steps, const char* name) {
  auto* deferred = dynamic_cast<DeferredCommunicator*>(&reducer.comm());
  ASSERT_NE(deferred, nullptr) << name;
  EXPECT_EQ(pending_after_backward, reducer.num_buckets()) << name;
  EXPECT_EQ(deferred->started(), steps * reducer.num_buckets()) << name;
  EXPECT_EQ(deferred->joins(), steps) << name;
}

int64_t pending(Reducer& reducer) {
  auto* deferred = dynamic_cast<DeferredCommunicator*>(&reducer.comm());
  return deferred != nullptr ? deferred->pending() : 0;
}

TEST(Gradients, AveragedGradientEqualsTheGlobalBatchGradient) {
  auto comm = make_world_communicator();
  for (const Mode& mode : modes()) {
    if (mode.options.shard_optimizer) continue;  // ZeRO keeps only this rank's slice
    auto dp = make_mlp(1);
    broadcast_tensors(dp->parameters(), *comm);
    Reducer reducer(dp->parameters(), *reducer_comm(mode), mode.options);
    auto single = make_mlp(1);
    const auto [x, t] = global_batch(0);
    reducer.zero_grad();
    loss_of(*dp, my_rows(x, *comm), my_rows(t, *comm)).backward();
    const int64_t started = pending(reducer);
    reducer.finalize();
    if (mode.stream_ordered) expect_started_in_backward(reducer, started, 1, mode.name);
    loss_of(*single, x, t).backward();
    const auto a = dp->parameters(), b = single->parameters();
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_TRUE(torch::allclose(a[i].grad(), b[i].grad(), 1e-5, 1e-6))
          << mode.name << " parameter " << i << " max diff "
          << (a[i].grad() - b[i].grad()).abs().max().item<float>();
    }
    if (comm->size() > 1 && mode.options.bucket_bytes < 4096) {
      EXPECT_GT(reducer.num_buckets(), 2);
    }
  }
}

TEST(Gradients, EveryReducerModeMatchesOneProcessAdamW) {
  auto comm = make_world_communicator();
  constexpr double kLr = 1e-2, kClip = 0.5;
  // The reference: one process, the whole global batch, torch::optim::AdamW and clip_grad_norm_.
  auto single = make_mlp(100);
  torch::optim::AdamW opt_single(single->parameters(),
                                 torch::optim::AdamWOptions(kLr).weight_decay(0.01));
  for (int64_t step = 0; step < 5; ++step) {
    const auto [x, t] = global_batch(step);
    opt_single.zero_grad();
    loss_of(*single, x, t).backward();
    torch::nn::utils::clip_grad_norm_(single->parameters(), kClip);
    opt_single.step();
  }
  for (const Mode& mode : modes()) {
    // Different seeds per rank: the broadcast must make the start identical.
    auto dp = make_mlp(100 + static_cast<uint64_t>(comm->rank()));
    broadcast_tensors(dp->parameters(), *comm);
    Reducer reducer(dp->parameters(), *reducer_comm(mode), mode.options);
    AdamWConfig ac;
    ac.weight_decay = 0.01;
    FlatAdamW opt(reducer, ac);
    for (int64_t step = 0; step < 5; ++step) {
      const auto [x, t] = global_batch(step);
      reducer.zero_grad();
      loss_of(*dp, my_rows(x, *comm), my_rows(t, *comm)).backward();
      const int64_t started = pending(reducer);
      reducer.finalize();
      if (mode.stream_ordered) expect_started_in_backward(reducer, started, step + 1, mode.name);
      opt.clip_grad_norm(kClip);
      opt.step(kLr);
    }
    EXPECT_EQ(max_divergence(dp->parameters(), *comm), 0.0) << mode.name;
    const auto a = dp->parameters(), b = single->parameters();
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_TRUE(torch::allclose(a[i], b[i], 1e-4, 1e-5))
          << mode.name << " parameter " << i << " max diff " << (a[i] - b[i]).abs().max().item<float>();
    }
    if (mode.options.shard_optimizer && comm->size() > 1) {
      // Each rank holds only its slice of the moments.
      EXPECT_LT(opt.exp_avg()[0].numel(), reducer.numel());
    }
  }
}

class GradientsBothOverlaps : public ::testing::TestWithParam<bool> {};  // stream-ordered?

INSTANTIATE_TEST_SUITE_P(Gradients, GradientsBothOverlaps, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "StreamOrdered" : "Threaded"; });

TEST_P(GradientsBothOverlaps, MicroBatchAccumulationSyncsOnceAndEqualsTheWholeBatch) {
  auto comm = make_world_communicator();
  auto dp = make_mlp(5);
  broadcast_tensors(dp->parameters(), *comm);
  const Mode mode{"", {2048, true, false, GetParam()}, GetParam()};
  Reducer reducer(dp->parameters(), *reducer_comm(mode), mode.options);
  auto single = make_mlp(5);
  const auto [x, t] = global_batch(3);
  const torch::Tensor xr = my_rows(x, *comm), tr = my_rows(t, *comm);
  const int64_t half = xr.size(0) / 2;  // 12 / W rows: 12, 6 or 4, halves of equal size
  reducer.zero_grad();
  reducer.set_sync(false);
  (0.5 * loss_of(*dp, xr.slice(0, 0, half), tr.slice(0, 0, half))).backward();
  EXPECT_EQ(pending(reducer), 0);  // nothing started while accumulating
  reducer.finalize();  // nothing to do while accumulating
  EXPECT_EQ(reducer.stats().steps, 0);
  reducer.set_sync(true);
  (0.5 * loss_of(*dp, xr.slice(0, half), tr.slice(0, half))).backward();
  reducer.finalize();
  EXPECT_EQ(reducer.stats().steps, 1);
  loss_of(*single, x, t).backward();
  const auto a = dp->parameters(), b = single->parameters();
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(torch::allclose(a[i].grad(), b[i].grad(), 1e-5, 1e-6)) << "parameter " << i;
  }
}

TEST_P(GradientsBothOverlaps, UnusedParametersCountAsZeroAndNothingHangs) {
  // Rank r's loss uses the second network only on rank 0: its averaged gradient is rank 0's / W.
  auto comm = make_world_communicator();
  const int world = comm->size();
  auto a = make_mlp(7), b = make_mlp(8);
  std::vector<torch::Tensor> params = a->parameters();
  for (const auto& p : b->parameters()) params.push_back(p);
  const Mode mode{"", {1024, true, false, GetParam()}, GetParam()};
  Reducer reducer(params, *reducer_comm(mode), mode.options);
  const auto [x, t] = global_batch(1);
  const auto rows = [&](const torch::Tensor& full, int r) {
    return full.index_select(0, torch::arange(r, kGlobalBatch, world, torch::kInt64));
  };
  reducer.zero_grad();
  torch::Tensor loss = loss_of(*a, rows(x, comm->rank()), rows(t, comm->rank()));
  if (comm->rank() == 0) loss = loss + loss_of(*b, rows(x, 0), rows(t, 0));
  loss.backward();
  reducer.finalize();
  auto ra = make_mlp(7), rb = make_mlp(8);
  torch::Tensor ref = loss_of(*rb, rows(x, 0), rows(t, 0));
  for (int r = 0; r < world; ++r) ref = ref + loss_of(*ra, rows(x, r), rows(t, r));
  (ref / world).backward();
  std::vector<torch::Tensor> ref_params = ra->parameters();
  for (const auto& p : rb->parameters()) ref_params.push_back(p);
  for (size_t i = 0; i < params.size(); ++i) {
    EXPECT_TRUE(torch::allclose(params[i].grad(), ref_params[i].grad(), 1e-5, 1e-6)) << "parameter " << i;
  }
}

TEST(Gradients, ReplacedGradientsAreReportedNotSilentlyLost) {
  auto comm = make_world_communicator();
  auto net = make_mlp(9);
  Reducer reducer(net->parameters(), *comm);
  for (auto& p : net->parameters()) p.mutable_grad() = torch::Tensor();  // optimizer.zero_grad()
  const auto [x, t] = global_batch(0);
  EXPECT_ANY_THROW(loss_of(*net, my_rows(x, *comm), my_rows(t, *comm)).backward());
}

TEST(Gradients, RebindingHooksGivesFreshAccumulatorsThatStillReduce) {
  // A captured CUDA graph moves the reducer's hooks onto accumulators made on its stream
  // (Reducer::rebind_hooks): the old accumulators must be gone, the new ones must still feed the
  // buckets (the global-batch gradient, twice), and a graph kept alive must be refused, with the
  // hooks still working afterwards.
  auto comm = make_world_communicator();
  auto dp = make_mlp(12), single = make_mlp(12);
  Reducer reducer(dp->parameters(), *comm, {2048, true, false});
  std::vector<std::weak_ptr<torch::autograd::Node>> before;
  for (const auto& p : dp->parameters()) before.push_back(torch::autograd::impl::grad_accumulator(p));
  const auto check_step = [&](int64_t step, const char* when) {
    const auto [x, t] = global_batch(step);
    reducer.zero_grad();
    loss_of(*dp, my_rows(x, *comm), my_rows(t, *comm)).backward();
    reducer.finalize();
    for (auto& p : single->parameters()) p.mutable_grad() = torch::Tensor();
    loss_of(*single, x, t).backward();
    const auto a = dp->parameters(), b = single->parameters();
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_TRUE(torch::allclose(a[i].grad(), b[i].grad(), 1e-5, 1e-6)) << when << ": parameter " << i;
    }
  };
  check_step(0, "before rebinding");
  reducer.rebind_hooks();
  for (size_t i = 0; i < before.size(); ++i) EXPECT_TRUE(before[i].expired()) << "accumulator " << i;
  check_step(1, "after rebinding");
  EXPECT_EQ(reducer.stats().steps, 2);

  const auto [x, t] = global_batch(2);
  torch::Tensor kept = loss_of(*dp, my_rows(x, *comm), my_rows(t, *comm));  // its graph holds the accumulators
  EXPECT_THROW(reducer.rebind_hooks(), InputError);
  kept = torch::Tensor();
  check_step(3, "after a refused rebinding");
}

TEST(Gradients, NcclPathMatchesTheMpiPathOnOneGpu) {
  // NCCL refuses two ranks on one GPU, so the GPU host checks NCCL with one rank: the reducer
  // and ZeRO-1 AdamW on CUDA through NCCL against the same steps on the CPU.
  auto world = make_world_communicator();
  if (!torch::cuda::is_available() || world->size() != 1 || !has_nccl()) {
    GTEST_SKIP() << "needs one rank, a CUDA device and an NCCL build (the GPU host)";
  }
  const torch::Device cuda(torch::kCUDA, 0);
  auto nccl = make_nccl_communicator(cuda);
  EXPECT_EQ(nccl->backend(), "nccl");
  torch::Tensor v = torch::arange(6, torch::TensorOptions().dtype(torch::kFloat32).device(cuda));
  nccl->all_reduce(v);
  EXPECT_TRUE(torch::equal(v.cpu(), torch::arange(6, torch::kFloat32)));
  // With one rank the reducer has nothing to send unless told to (communicate_alone): then its
  // NCCL collectives run, started from the gradient hooks (overlap) or in finalize.
  for (const Mode& mode : {Mode{"zero1+overlap, no collectives", {2048, true, true}},
                           Mode{"bucketed+overlap, NCCL from the hooks", {2048, true, false, true}},
                           Mode{"zero1+overlap, NCCL from the hooks", {2048, true, true, true}},
                           Mode{"zero1, NCCL in finalize", {2048, false, true, true}}}) {
    auto gpu = make_mlp(11), cpu = make_mlp(11);
    gpu->to(cuda);
    Reducer rg(gpu->parameters(), *nccl, mode.options);
    Reducer rc(cpu->parameters(), *world, mode.options);
    FlatAdamW og(rg, {}), oc(rc, {});
    for (int64_t step = 0; step < 3; ++step) {
      const auto [x, t] = global_batch(step);
      rg.zero_grad();
      rc.zero_grad();
      loss_of(*gpu, x.to(cuda), t.to(cuda)).backward();
      loss_of(*cpu, x, t).backward();
      rg.finalize();
      rc.finalize();
      og.step(1e-2);
      oc.step(1e-2);
    }
    EXPECT_EQ(rg.stats().bytes > 0, mode.options.communicate_alone) << mode.name;
    const auto a = gpu->parameters(), b = cpu->parameters();
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_TRUE(torch::allclose(a[i].cpu(), b[i], 1e-4, 1e-5)) << mode.name << ": parameter " << i;
    }
  }
}

TEST(Gradients, ChannelsLastWeightsKeepTheirLayoutInTheBucketsAndTrainLikeContiguous) {
  auto comm = make_world_communicator();
  const auto unet = [](uint64_t seed) {
    torch::manual_seed(seed);
    return models::make_network(testing::small_unet_config({1, 8, 8}, 4, 0.0));
  };
  const auto batch = [](int64_t step) {
    const torch::Tensor idx = rng::arange_indices(0, kGlobalBatch);
    return std::pair{rng::normal({9, rng::Purpose::kNoise}, static_cast<uint64_t>(step), idx, {1, 8, 8}),
                     rng::randint({9, rng::Purpose::kTimestep}, static_cast<uint64_t>(step), idx, 1000)
                         .to(torch::kFloat32)};
  };
  // A large AdamW eps keeps the update proportional to the gradient: with the usual 1e-8, the
  // near-zero gradients of a fresh UNet (zero-initialised output layers) turn rounding-level
  // differences between the layouts into whole lr-sized steps.
  constexpr double kLr = 1e-2, kEps = 1e-2;
  // The reference: contiguous weights, one process, the whole batch, torch::optim::AdamW.
  auto single = unet(21);
  torch::optim::AdamW opt_single(single->parameters(), torch::optim::AdamWOptions(kLr).eps(kEps).weight_decay(0));
  auto dp = unet(21);
  models::set_channels_last(*dp, true);
  Reducer reducer(dp->parameters(), *comm, {4096, true, false});
  AdamWConfig ac;
  ac.eps = kEps;
  FlatAdamW opt(reducer, ac);
  for (int64_t step = 0; step < 3; ++step) {
    const auto [x, t] = batch(step);
    opt_single.zero_grad();
    (single->forward(x, t) - x).pow(2).mean().backward();
    opt_single.step();
    reducer.zero_grad();
    const torch::Tensor xr = models::to_layout(my_rows(x, *comm), true);
    (dp->forward(xr, my_rows(t, *comm)) - xr).pow(2).mean().backward();
    reducer.finalize();
    if (step == 0) {  // the averaged channels-last gradient is the global-batch gradient
      const auto a = dp->parameters(), b = single->parameters();
      for (size_t i = 0; i < a.size(); ++i) {
        EXPECT_TRUE(torch::allclose(a[i].grad(), b[i].grad(), 1e-4, 1e-7))
            << "gradient " << i << " max diff " << (a[i].grad() - b[i].grad()).abs().max().item<float>();
      }
    }
    opt.step(kLr);
  }
  EXPECT_EQ(max_divergence(dp->parameters(), *comm), 0.0);
  const auto a = dp->parameters(), b = single->parameters();
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].dim() == 4) {
      EXPECT_TRUE(a[i].is_contiguous(at::MemoryFormat::ChannelsLast)) << "parameter " << i;
      EXPECT_EQ(a[i].grad().strides(), a[i].strides()) << "parameter " << i;
    }
    EXPECT_TRUE(torch::allclose(a[i], b[i], 1e-4, 1e-5))
        << "parameter " << i << " max diff " << (a[i] - b[i]).abs().max().item<float>();
  }
}

// A step whose averaged gradient is not finite, passed to update() with found_inf = 1 (as
// ModelGroup::update does, from the gradient norm), is no step: parameters, moments and the step
// count stay as they were, so batches 0, (1 poisoned), 2 end bit for bit where batches 0, 2 do, in
// every reducer mode.
TEST(Gradients, ANonFiniteStepIsSkippedExactly) {
  auto comm = make_world_communicator();
  for (const Mode& mode : modes()) {
    const auto run = [&](const std::vector<int64_t>& batches, int64_t poisoned) {
      auto dp = make_mlp(300);
      broadcast_tensors(dp->parameters(), *comm);
      Reducer reducer(dp->parameters(), *reducer_comm(mode), mode.options);
      FlatAdamW opt(reducer, {});
      const torch::Tensor lr = torch::full({}, 1e-2, torch::kFloat32);
      for (const int64_t b : batches) {
        const auto [x, t] = global_batch(b);
        reducer.zero_grad();
        torch::Tensor loss = loss_of(*dp, my_rows(x, *comm), my_rows(t, *comm));
        if (b == poisoned) loss = loss * std::numeric_limits<float>::quiet_NaN();
        loss.backward();
        reducer.finalize();
        const torch::Tensor found_inf = opt.grad_norm().isfinite().logical_not().to(torch::kFloat32).reshape({1});
        EXPECT_EQ(found_inf.item<float>(), b == poisoned ? 1.0f : 0.0f) << mode.name << " batch " << b;
        std::vector<torch::Tensor> before;
        for (const auto& p : dp->parameters()) before.push_back(p.detach().clone());
        const torch::Tensor m = opt.exp_avg()[0].clone();
        opt.count_step();
        opt.update(lr, found_inf);
        if (b == poisoned) {
          const auto after = dp->parameters();
          for (size_t k = 0; k < after.size(); ++k) EXPECT_TRUE(torch::equal(after[k], before[k])) << mode.name;
          EXPECT_TRUE(torch::equal(opt.exp_avg()[0], m)) << mode.name;
        }
      }
      std::vector<torch::Tensor> out;
      for (const auto& p : dp->parameters()) out.push_back(p.detach().clone());
      return out;
    };
    const auto skipped = run({0, 1, 2}, 1), plain = run({0, 2}, -1);
    for (size_t k = 0; k < plain.size(); ++k) {
      EXPECT_TRUE(torch::equal(skipped[k], plain[k])) << mode.name << " parameter " << k;
      EXPECT_TRUE(skipped[k].isfinite().all().item<bool>()) << mode.name;
    }
  }
}

TEST(Gradients, TrainingLoopKeepsReplicasInSync) {
  auto comm = make_world_communicator();
  const auto dir = std::filesystem::temp_directory_path() /
                   ("unidiff-dist-train-" + std::to_string(comm->size()));
  if (comm->rank() == 0) {
    unidiff::fs::remove_tree(dir);
    data::write_dataset(dir / "moons.h5", data::make_toy("moons", 600, 0));
  }
  comm->barrier();
  experiments::RunConfig c;
  c.run_dir = (dir / "run").string();
  c.data.path = (dir / "moons.h5").string();
  c.data.global_batch = 60;
  c.steps = 20;
  c.log_every = 10;
  c.threads = 1;
  const auto result = experiments::train(c, {{"model_hidden", "32"}, {"model_layers", "2"}});
  EXPECT_EQ(result.replica_divergence, 0.0);
  EXPECT_TRUE(std::isfinite(result.final_loss));
  EXPECT_GT(result.final_loss, 0.0);
  if (comm->rank() == 0) {
    EXPECT_TRUE(std::filesystem::exists(dir / "run" / "model.h5"));
    EXPECT_TRUE(std::filesystem::exists(dir / "run" / "metrics.jsonl"));
  }
  comm->barrier();
  if (comm->rank() == 0) unidiff::fs::remove_tree(dir);
}

}  // namespace
}  // namespace unidiff::dist
