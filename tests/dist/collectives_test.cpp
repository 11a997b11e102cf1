// Collectives with closed-form answers: sums and maxima of rank numbers, broadcast from the last
// rank, all-gather in rank order.
#include <gtest/gtest.h>
#include <sched.h>
#include <torch/utils.h>

#include <algorithm>
#include <cstdlib>
#include <optional>
#include <string>
#include <thread>

#include "dist/communicator.h"
#include "dist/world.h"

namespace unidiff::dist {
namespace {

TEST(Collectives, WorldMatchesTheLauncher) {
  auto comm = make_world_communicator();
  EXPECT_EQ(comm->size(), world_size());
  EXPECT_EQ(comm->rank(), rank());
  EXPECT_GE(local_size(), 1);
  EXPECT_LT(local_rank(), local_size());
}

// Threads: an explicit count wins, then a positive OMP_NUM_THREADS, then the host's cores shared by
// its ranks (the test's launcher exports OMP_NUM_THREADS=1, so every branch is set up here). The
// last expected value is the documented rule computed here from the affinity mask and the launcher's
// ranks per host.
TEST(World, ThreadsFollowTheFlagThenOmpNumThreadsThenTheCoresPerRank) {
  const char* saved = std::getenv("OMP_NUM_THREADS");
  const std::optional<std::string> restore = saved ? std::optional<std::string>(saved) : std::nullopt;
  const int before = torch::get_num_threads();
  cpu_set_t set;
  int cores = static_cast<int>(std::thread::hardware_concurrency());
  if (sched_getaffinity(0, sizeof(set), &set) == 0) cores = CPU_COUNT(&set);
  const int shared = std::max(1, cores / local_size());

  setenv("OMP_NUM_THREADS", "3", 1);
  EXPECT_EQ(configure_threads(0), 3);
  EXPECT_EQ(torch::get_num_threads(), 3);
  EXPECT_EQ(configure_threads(5), 5);
  EXPECT_EQ(torch::get_num_threads(), 5);
  for (const char* bad : {"0", "-2", "two", "2x", ""}) {
    setenv("OMP_NUM_THREADS", bad, 1);
    EXPECT_EQ(configure_threads(0), shared) << "OMP_NUM_THREADS='" << bad << "'";
  }
  unsetenv("OMP_NUM_THREADS");
  EXPECT_EQ(configure_threads(0), shared);
  EXPECT_EQ(torch::get_num_threads(), shared);

  if (restore) setenv("OMP_NUM_THREADS", restore->c_str(), 1);
  torch::set_num_threads(before);
}

TEST(Collectives, AllReduceSumAndMax) {
  auto comm = make_world_communicator();
  const int w = comm->size(), r = comm->rank();
  torch::Tensor f = torch::tensor({1.0f, 2.0f, 3.0f}) * r;
  comm->all_reduce(f);
  const float tri = static_cast<float>(w * (w - 1) / 2);  // 0 + 1 + ... + (w - 1)
  EXPECT_TRUE(torch::equal(f, torch::tensor({tri, 2 * tri, 3 * tri})));
  torch::Tensor i = torch::full({4}, r, torch::kInt64);
  comm->all_reduce(i, ReduceOp::kMax);
  EXPECT_TRUE(torch::equal(i, torch::full({4}, w - 1, torch::kInt64)));
  torch::Tensor d = torch::full({2, 2}, static_cast<double>(r + 1), torch::kFloat64);
  comm->all_reduce(d, ReduceOp::kMin);
  EXPECT_TRUE(torch::equal(d, torch::ones({2, 2}, torch::kFloat64)));
}

TEST(Collectives, BroadcastFromTheLastRank) {
  auto comm = make_world_communicator();
  const int root = comm->size() - 1;
  torch::Tensor t = torch::full({5}, static_cast<float>(comm->rank()));
  comm->broadcast(t, root);
  EXPECT_TRUE(torch::equal(t, torch::full({5}, static_cast<float>(root))));
  // Non-contiguous tensors are staged and written back.
  torch::Tensor m = torch::full({3, 4}, static_cast<float>(comm->rank())).t();
  comm->broadcast(m, root);
  EXPECT_TRUE(torch::equal(m, torch::full({4, 3}, static_cast<float>(root))));
}

TEST(Collectives, AllGatherInRankOrder) {
  auto comm = make_world_communicator();
  const torch::Tensor mine = torch::arange(3, torch::kInt64) + 10 * comm->rank();
  const torch::Tensor all = comm->all_gather(mine.view({1, 3}));
  ASSERT_EQ(all.sizes(), torch::IntArrayRef({comm->size(), 3}));
  for (int r = 0; r < comm->size(); ++r) {
    EXPECT_TRUE(torch::equal(all[r], torch::arange(3, torch::kInt64) + 10 * r));
  }
  comm->barrier();
}

}  // namespace
}  // namespace unidiff::dist
