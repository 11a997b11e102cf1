// Sharded sampling: disjoint shards that cover each epoch, global batches independent of the
// world size, and exact continuation from a saved position at another world size.
#include <gtest/gtest.h>

#include <set>

#include "core/error.h"
#include "data/sampler.h"

namespace unidiff::data {
namespace {

std::vector<int64_t> to_vec(const torch::Tensor& t) {
  return {t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel()};
}

/// The global batch k as the union over ranks, sorted.
std::vector<std::set<int64_t>> global_batches(int64_t n, int64_t batch, int world, int count) {
  std::vector<ShardedSampler> ranks;
  for (int r = 0; r < world; ++r) ranks.emplace_back(n, batch, world, r, 9);
  std::vector<std::set<int64_t>> out;
  for (int k = 0; k < count; ++k) {
    std::set<int64_t> u;
    for (auto& s : ranks) {
      for (int64_t i : to_vec(s.next())) EXPECT_TRUE(u.insert(i).second) << "duplicate " << i;
    }
    out.push_back(u);
  }
  return out;
}

TEST(ShardedSampler, ShardsAreDisjointAndCoverTheEpoch) {
  // 100 samples, global batch 12: 8 batches per epoch (96 samples, 4 dropped).
  for (int world : {1, 2, 3, 4}) {
    const auto batches = global_batches(100, 12, world, 8);
    std::set<int64_t> seen;
    for (const auto& b : batches) {
      EXPECT_EQ(b.size(), 12u);
      for (int64_t i : b) EXPECT_TRUE(seen.insert(i).second);
    }
    EXPECT_EQ(seen.size(), 96u);
  }
}

TEST(ShardedSampler, GlobalBatchesAreTheSameForEveryWorldSize) {
  const auto one = global_batches(50, 6, 1, 20);  // crosses two epoch boundaries
  for (int world : {2, 3, 6}) EXPECT_EQ(global_batches(50, 6, world, 20), one);
}

TEST(ShardedSampler, ResumesFromASavedPositionAtAnotherWorldSize) {
  const auto straight = global_batches(40, 6, 2, 15);
  ShardedSampler a(40, 6, 2, 0, 9), b(40, 6, 2, 1, 9);
  for (int k = 0; k < 7; ++k) {
    a.next();
    b.next();
  }
  const int64_t saved = a.position();
  EXPECT_EQ(saved, 42);
  std::vector<ShardedSampler> resumed;
  for (int r = 0; r < 3; ++r) {
    resumed.emplace_back(40, 6, 3, r, 9);
    resumed.back().set_position(saved);
  }
  for (int k = 7; k < 15; ++k) {
    std::set<int64_t> u;
    for (auto& s : resumed) {
      for (int64_t i : to_vec(s.next())) u.insert(i);
    }
    EXPECT_EQ(u, straight[static_cast<size_t>(k)]) << "batch " << k;
  }
}

TEST(ShardedSampler, RejectsBatchesThatDoNotFit) {
  EXPECT_THROW(ShardedSampler(10, 12, 1, 0, 0), InputError);
  EXPECT_THROW(ShardedSampler(100, 10, 3, 0, 0), InputError);
  ShardedSampler s(100, 10, 2, 0, 0);
  EXPECT_THROW(s.set_position(15), InputError);
}

}  // namespace
}  // namespace unidiff::data
