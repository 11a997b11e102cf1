// The method framework under mpirun -np 1, 2, 3 (experiments/run/):
// - two trained groups whose losses cross (a generator's loss through a second network, DMD's
//   generator loss through the fake score; the second network's loss on the first one's detached
//   output): with the second group's NoGradScope held, each group's averaged gradient equals the
//   one-process global-batch gradient of its own loss, and the crossing loss leaves the second
//   group's gradients and reducer alone;
// - keyed draws of several phases and sub-steps on each rank's shard equal the one-process draws
//   of the global batch, and differ between phases and sub-steps;
// - two data streams checkpointed mid-run resume at their positions (the batches after the resume
//   equal an uninterrupted run's);
// - a group restarted in place trains exactly as a new group built from the same weights;
// - a frozen group holds no EMA and no gradients, and stores bfloat16 on request;
// - two trained groups in one backward pass (DMD2's fake score and discriminator): both reducers'
//   threads run collectives at once on their own communicators, step after step, and each group
//   averages exactly its own gradients (MPI must be initialised with MPI_THREAD_MULTIPLE: with
//   SERIALIZED this could hang or mix messages).
#include <gtest/gtest.h>

#include <filesystem>

#include "core/fs.h"
#include "core/rng.h"
#include "data/dataset.h"
#include "dist/checkpoint.h"
#include "dist/communicator.h"
#include "dist/gradients.h"
#include "experiments/run/checkpointing.h"
#include "experiments/run/model_group.h"
#include "experiments/run/streams.h"
#include "models/network.h"

namespace unidiff::experiments {
namespace {

constexpr int64_t kGlobalBatch = 12;  // divisible by 1, 2, 3

std::shared_ptr<models::Network> make_mlp(uint64_t seed, int64_t hidden = 16) {
  models::NetworkConfig c;
  c.data_shape = {2};
  c.hidden = hidden;
  c.layers = 2;
  c.time_dim = 8;
  torch::manual_seed(seed);
  return models::make_network(c);
}

void copy_params(models::Network& from, models::Network& to) {
  torch::NoGradGuard no_grad;
  const auto a = from.parameters(), b = to.parameters();
  for (size_t i = 0; i < a.size(); ++i) b[i].copy_(a[i]);
}

/// This rank's rows of a global batch: r, r + W, ... (the sampler's sharding rule).
torch::Tensor my_rows(const torch::Tensor& full, const dist::Communicator& comm) {
  return full.index_select(0, torch::arange(comm.rank(), full.size(0), comm.size(), torch::kInt64));
}

/// The losses that cross: the generator G maps noise to samples; the "critic" C scores them.
/// G's loss flows through C (C held fixed: its gradient is not C's business); C's loss sees G's
/// samples detached.
torch::Tensor generator_loss(models::Network& g, models::Network& c, const torch::Tensor& z, const torch::Tensor& t) {
  const torch::Tensor x = g.forward(z, t);
  return c.forward(x, t).pow(2).mean() + 0.1 * x.pow(2).mean();
}
torch::Tensor critic_loss(models::Network& g, models::Network& c, const torch::Tensor& z, const torch::Tensor& t) {
  const torch::Tensor x = g.forward(z, t).detach();
  return (c.forward(x, t) - x).pow(2).mean();
}

TEST(Framework, CrossingLossesEachGroupAveragesItsOwnGradient) {
  auto comm = dist::make_world_communicator();
  DistConfig small_buckets;
  small_buckets.bucket_mb = 0.002;  // several buckets, overlapped with backward
  ModelGroup gen("generator", ModelGroup::Role::kTrained, make_mlp(1), *comm, {}, small_buckets, 10);
  ModelGroup critic("critic", ModelGroup::Role::kTrained, make_mlp(2), *comm, {}, small_buckets, 10);
  auto g1 = make_mlp(1), c1 = make_mlp(2);  // one-process copies
  const torch::Tensor idx = rng::arange_indices(0, kGlobalBatch);
  const torch::Tensor z = rng::normal({9, rng::Purpose::kNoise}, 0, idx, {2});
  const torch::Tensor t = rng::uniform({9, rng::Purpose::kTimestep}, 0, idx, {1}).view({-1}) * 1000;

  // Phase 1: the generator's loss, through the critic.
  gen.begin_step();
  critic.begin_step();
  {
    const ModelGroup::NoGradScope fixed(critic);
    generator_loss(gen.net(), critic.net(), my_rows(z, *comm), my_rows(t, *comm)).backward();
  }
  gen.reducer().finalize();
  for (const auto& p : critic.net().parameters()) {
    EXPECT_TRUE(!p.grad().defined() || p.grad().abs().max().item<float>() == 0) << "the crossing loss reached the critic";
    EXPECT_TRUE(p.requires_grad());  // the scope restored it
  }
  // Phase 2: the critic's own loss.
  critic_loss(gen.net(), critic.net(), my_rows(z, *comm), my_rows(t, *comm)).backward();
  critic.reducer().finalize();

  // One process, the global batch: each network's gradient of its own loss.
  for (auto& p : c1->parameters()) p.set_requires_grad(false);
  generator_loss(*g1, *c1, z, t).backward();
  for (auto& p : c1->parameters()) p.set_requires_grad(true);
  critic_loss(*g1, *c1, z, t).backward();
  const auto check = [&](models::Network& dp, models::Network& one, const char* what) {
    const auto a = dp.parameters(), b = one.parameters();
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_TRUE(torch::allclose(a[i].grad(), b[i].grad(), 1e-5, 1e-6))
          << what << " parameter " << i << " max diff " << (a[i].grad() - b[i].grad()).abs().max().item<float>();
    }
  };
  check(gen.net(), *g1, "generator");
  check(critic.net(), *c1, "critic");
}

TEST(Framework, TwoGroupsInOneBackwardReduceConcurrentlyStepAfterStep) {
  auto comm = dist::make_world_communicator();
  DistConfig small_buckets;
  small_buckets.bucket_mb = 0.001;  // many buckets each, launched from both groups' hooks
  ModelGroup a("a", ModelGroup::Role::kTrained, make_mlp(3, 32), *comm, {}, small_buckets, 10);
  ModelGroup b("b", ModelGroup::Role::kTrained, make_mlp(4, 32), *comm, {}, small_buckets, 10);
  if (comm->size() > 1) {
    ASSERT_TRUE(a.reducer().background() && b.reducer().background()) << "MPI gives no MPI_THREAD_MULTIPLE here";
    ASSERT_GT(a.reducer().num_buckets(), 2);
  }
  const torch::Tensor idx = rng::arange_indices(0, kGlobalBatch);
  const torch::Tensor t = rng::uniform({9, rng::Purpose::kTimestep}, 0, idx, {1}).view({-1}) * 1000;
  for (int step = 0; step < 200; ++step) {
    const torch::Tensor z = rng::normal({9, rng::Purpose::kNoise}, static_cast<uint64_t>(step), idx, {2});
    a.begin_step();
    b.begin_step();
    // Each rank's loss is its rows' share of the global mean (times W: the reducers average).
    const torch::Tensor zr = my_rows(z, *comm), tr = my_rows(t, *comm);
    const double w = static_cast<double>(comm->size());
    ((a.net().forward(zr, tr).pow(2).sum() + b.net().forward(zr, tr).pow(2).sum()) * (w / kGlobalBatch)).backward();
    a.reducer().finalize();
    b.reducer().finalize();
    if (step % 50 != 49) continue;
    // One process, the global batch, from the same weights (unchanged: nothing steps).
    auto a1 = make_mlp(3, 32), b1 = make_mlp(4, 32);
    ((a1->forward(z, t).pow(2).sum() + b1->forward(z, t).pow(2).sum()) / kGlobalBatch).backward();
    for (auto [dp, one] : {std::pair{&a, a1}, std::pair{&b, b1}}) {
      const auto x = dp->net().parameters(), y = one->parameters();
      for (size_t i = 0; i < x.size(); ++i) {
        ASSERT_TRUE(torch::allclose(x[i].grad(), y[i].grad(), 1e-4, 1e-5))
            << dp->name() << " parameter " << i << " at step " << step;
      }
    }
  }
}

TEST(Framework, MultiPhaseKeysAreTheGlobalBatchsOnEveryWorldSize) {
  auto comm = dist::make_world_communicator();
  const torch::Tensor idx = rng::arange_indices(0, kGlobalBatch);
  const rng::Stream noise{4, rng::Purpose::kNoise};
  std::vector<torch::Tensor> seen;
  for (uint8_t phase : {0, 1}) {
    for (uint16_t sub : {0, 1, 2}) {  // e.g. K = 3 fake-score updates per generator update
      const rng::Stream s = noise.in(phase, sub);
      const torch::Tensor mine = rng::normal(s, 11, my_rows(idx, *comm), {3});
      const torch::Tensor gathered = comm->all_gather(mine.contiguous());
      // all_gather stacks the ranks' shards; rank r holds rows r, r + W, ...: back to global order.
      const torch::Tensor order = my_rows(idx, *comm);
      const torch::Tensor all_rows = comm->all_gather(order.contiguous());
      const torch::Tensor global = rng::normal(s, 11, idx, {3});
      EXPECT_TRUE(torch::equal(gathered, global.index_select(0, all_rows))) << int(phase) << "/" << sub;
      for (const torch::Tensor& other : seen) EXPECT_FALSE(torch::allclose(other, global));
      seen.push_back(global);
    }
  }
  EXPECT_TRUE(torch::equal(seen.front(), rng::normal(noise, 11, idx, {3})));  // phase 0, sub 0: the plain stream
}

TEST(Framework, TwoStreamsResumeAtTheirPositions) {
  auto comm = dist::make_world_communicator();
  const auto dir = std::filesystem::temp_directory_path() / ("unidiff-streams-" + std::to_string(comm->size()));
  if (comm->rank() == 0) {
    unidiff::fs::remove_tree(dir);
    std::filesystem::create_directories(dir);
    data::write_dataset(dir / "a.h5", torch::arange(60, torch::kFloat32).view({30, 2}));
    data::write_dataset(dir / "b.h5", torch::arange(40, torch::kFloat32).view({40, 1}));
  }
  comm->barrier();
  const auto open = [&](const char* name, uint8_t number, const char* file, int64_t batch) {
    return std::make_unique<DataStream>(name, number, data::TensorDataset::load((dir / file).string()), batch,
                                        comm->size(), comm->rank(), 5, torch::kCPU);
  };
  // Uninterrupted: 9 steps of both streams (several epochs of the small one).
  auto a = open("real", 0, "a.h5", 12), b = open("gan", 1, "b.h5", 6);
  std::vector<torch::Tensor> want_a, want_b;
  for (int step = 0; step < 9; ++step) {
    want_a.push_back(a->next().index);
    want_b.push_back(b->next().index);
    if (step == 4) {  // checkpoint after 5 steps
      dist::CheckpointWriter w(*comm, dir / "run", 5);
      a->save(w);
      b->save(w);
      w.commit(0);
    }
  }
  // Resumed from the checkpoint: the same batches from step 5 on.
  const dist::CheckpointReader r(dist::checkpoints_dir(dir / "run") / "step-000000005");
  auto a2 = open("real", 0, "a.h5", 12), b2 = open("gan", 1, "b.h5", 6);
  a2->load(r);
  b2->load(r);
  EXPECT_EQ(r.attr_int("loader_position").value_or(-1), 60);  // the first stream also under its earlier name
  for (int step = 5; step < 9; ++step) {
    EXPECT_TRUE(torch::equal(a2->next().index, want_a[static_cast<size_t>(step)])) << "step " << step;
    EXPECT_TRUE(torch::equal(b2->next().index, want_b[static_cast<size_t>(step)])) << "step " << step;
  }
  // Two streams over the same data are keyed apart (their number): they read other orders.
  auto first = open("one", 0, "a.h5", 12), second = open("two", 1, "a.h5", 12);
  EXPECT_FALSE(torch::equal(first->next().index, second->next().index));
  comm->barrier();
  if (comm->rank() == 0) unidiff::fs::remove_tree(dir);
}

TEST(Framework, ARestartedGroupTrainsAsANewOne) {
  auto comm = dist::make_world_communicator();
  OptimConfig o;
  o.lr = 1e-2;
  o.warmup_steps = 2;
  o.ema_decay = 0.9;
  const torch::Tensor idx = rng::arange_indices(0, kGlobalBatch);
  const auto train = [&](ModelGroup& g, int64_t steps, uint64_t key) {
    for (int64_t s = 0; s < steps; ++s) {
      const torch::Tensor x = rng::normal({static_cast<uint32_t>(key), rng::Purpose::kNoise}, s, idx, {2});
      g.begin_step();
      (g.net().forward(my_rows(x, *comm), torch::zeros({x.size(0) / comm->size()})) - 1).pow(2).mean().backward();
      g.end_step(s);
    }
  };
  ModelGroup a("a", ModelGroup::Role::kTrained, make_mlp(3), *comm, o, {}, 4);
  train(a, 4, 1);
  a.ema().copy_to(a.net());
  auto fresh_net = make_mlp(3);
  copy_params(a.net(), *fresh_net);
  ModelGroup b("b", ModelGroup::Role::kTrained, fresh_net, *comm, o, {}, 4);
  a.restart(4);
  train(a, 4, 2);
  train(b, 4, 2);
  const auto pa = a.net().parameters(), pb = b.net().parameters();
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i], pb[i])) << "parameter " << i;
  for (size_t i = 0; i < a.ema().shadow().size(); ++i) {
    EXPECT_TRUE(torch::equal(a.ema().shadow()[i].second, b.ema().shadow()[i].second)) << "EMA " << i;
  }
}

TEST(Framework, FrozenGroupsHoldNoEmaNorGradientsAndMayStoreBf16) {
  auto comm = dist::make_world_communicator();
  auto net = make_mlp(4, 64);
  auto ref = make_mlp(4, 64);
  ModelGroup frozen("teacher", ModelGroup::Role::kFrozen, net, *comm);
  EXPECT_THROW(frozen.ema(), std::logic_error);
  for (const auto& p : frozen.net().parameters()) EXPECT_FALSE(p.requires_grad());
  const ModelGroup::Bytes fp32 = frozen.bytes();
  EXPECT_EQ(fp32.grads + fp32.optimizer + fp32.ema, 0);
  const torch::Tensor x = rng::normal({1, rng::Purpose::kNoise}, 0, rng::arange_indices(0, 32), {2});
  const torch::Tensor t = torch::full({32}, 10.0);
  const torch::Tensor want = ref->forward(x, t).detach();
  EXPECT_TRUE(torch::allclose(frozen.forward(x, t), want, 0, 0));
  frozen.store_as(torch::kBFloat16);
  EXPECT_EQ(frozen.bytes().params * 2, fp32.params);  // half the memory
  const torch::Tensor out = frozen.forward(x, t);
  EXPECT_EQ(out.scalar_type(), torch::kFloat32);
  // bfloat16 keeps 8 bits of mantissa: the output within a few percent of the float32 one.
  EXPECT_LT((out - want).abs().max().item<float>(), 0.05 * want.abs().max().item<float>() + 1e-3);
  // A trained group's bytes: weights, gradients, two moments and an EMA of the same size.
  ModelGroup trained("student", ModelGroup::Role::kTrained, make_mlp(4, 64), *comm);
  const ModelGroup::Bytes b = trained.bytes();
  EXPECT_EQ(b.ema, b.params);
  EXPECT_GE(b.optimizer, 2 * b.params / comm->size());
}

TEST(Framework, TheGuardHashIsStableAndOlderCheckpointsAreReadInTodaysNames) {
  // FNV-1a (64 bits) of "data_batch=512\nseed=0\n", computed by hand in Python.
  EXPECT_EQ(settings_hash({{"data_batch", "512"}, {"seed", "0"}}), "dcd5e807bbac506b");
  auto comm = dist::make_world_communicator();
  const auto dir = std::filesystem::temp_directory_path() / ("unidiff-legacy-" + std::to_string(comm->size()));
  if (comm->rank() == 0) unidiff::fs::remove_tree(dir);
  comm->barrier();
  {
    // What a checkpoint written before settings_version 2 recorded (no version attribute).
    dist::CheckpointWriter w(*comm, dir, 10);
    for (const auto& [k, v] : std::map<std::string, std::string>{{"method", "ddpm"},
                                                                 {"sigma_d", "0.5"},
                                                                 {"model_depth_heads_patch", "12/6/2"},
                                                                 {"data_shape", "[1, 28, 28]"},
                                                                 {"reflow", "no"},
                                                                 {"huber_c", "0.000763675"},
                                                                 {"data_batch", "512"}}) {
      w.set_attr("config/" + k, v);
    }
    w.commit(0);
  }
  const dist::CheckpointReader r(dist::checkpoints_dir(dir) / "step-000000010");
  const Guard now = {{"method", "pretrain"},     {"sigma_data", "0.5"},     {"model_depth", "12"},
                     {"model_heads", "6"},       {"model_patch", "2"},      {"data_shape", "1,28,28"},
                     {"reflow", "false"},        {"huber_c", "0.0007636753236814714"},
                     {"data_batch", "512"},      {"model_dropout", "0.1"}};  // not recorded then: not compared
  EXPECT_EQ(changed_settings(r, now), std::vector<std::string>{});
  Guard changed = now;
  changed["model_heads"] = "4";
  changed["huber_c"] = "0.001";
  EXPECT_EQ(changed_settings(r, changed),
            (std::vector<std::string>{"huber_c: 0.000763675 -> 0.001", "model_heads: 6 -> 4"}));
  comm->barrier();
  if (comm->rank() == 0) unidiff::fs::remove_tree(dir);
}

}  // namespace
}  // namespace unidiff::experiments
