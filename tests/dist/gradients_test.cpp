// Data parallelism: after averaging, each rank's gradient equals the gradient of one process on
// the whole global batch; replicas stay identical through optimizer steps; and the training loop
// run under mpirun keeps its replicas in sync.
#include <gtest/gtest.h>

#include <torch/optim/adamw.h>

#include <filesystem>

#include "core/fs.h"
#include "core/rng.h"
#include "data/dataset.h"
#include "data/toy.h"
#include "dist/communicator.h"
#include "dist/gradients.h"
#include "dist/world.h"
#include "experiments/train_diffusion.h"
#include "models/network.h"

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

TEST(Gradients, AveragedGradientEqualsTheGlobalBatchGradient) {
  auto comm = make_world_communicator();
  auto dp = make_mlp(1);
  broadcast_tensors(dp->parameters(), *comm);
  auto single = make_mlp(1);
  const auto [x, t] = global_batch(0);

  loss_of(*dp, my_rows(x, *comm), my_rows(t, *comm)).backward();
  GradientAverager(dp->parameters(), *comm).finalize();
  loss_of(*single, x, t).backward();

  const auto a = dp->parameters(), b = single->parameters();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(torch::allclose(a[i].grad(), b[i].grad(), 1e-5, 1e-6))
        << "parameter " << i << " max diff " << (a[i].grad() - b[i].grad()).abs().max().item<float>();
  }
}

TEST(Gradients, ReplicasStayIdenticalAndMatchOneProcess) {
  auto comm = make_world_communicator();
  // Different seeds per rank: the broadcast must make the start identical.
  auto dp = make_mlp(100 + static_cast<uint64_t>(comm->rank()));
  broadcast_tensors(dp->parameters(), *comm);
  auto single = make_mlp(100);
  torch::optim::AdamW opt_dp(dp->parameters(), torch::optim::AdamWOptions(1e-2));
  torch::optim::AdamW opt_single(single->parameters(), torch::optim::AdamWOptions(1e-2));
  GradientAverager averager(dp->parameters(), *comm);
  for (int64_t step = 0; step < 5; ++step) {
    const auto [x, t] = global_batch(step);
    opt_dp.zero_grad();
    loss_of(*dp, my_rows(x, *comm), my_rows(t, *comm)).backward();
    averager.finalize();
    opt_dp.step();
    opt_single.zero_grad();
    loss_of(*single, x, t).backward();
    opt_single.step();
  }
  EXPECT_EQ(max_divergence(dp->parameters(), *comm), 0.0);
  const auto a = dp->parameters(), b = single->parameters();
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(torch::allclose(a[i], b[i], 1e-4, 1e-5)) << "parameter " << i;
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
  experiments::TrainConfig c;
  c.run_dir = (dir / "run").string();
  c.data.path = (dir / "moons.h5").string();
  c.data.global_batch = 60;
  c.steps = 20;
  c.log_every = 10;
  c.threads = 1;
  c.network.hidden = 32;
  c.network.layers = 2;
  const auto result = experiments::train_diffusion(c);
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
