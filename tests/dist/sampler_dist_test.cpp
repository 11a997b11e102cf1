// The sharded sampler under the real world size (mpirun -np 1, 2, 3): every rank's shares of a
// global batch, gathered, are disjoint and equal the global batch a single process computes;
// resuming from the saved position continues the same sequence.
#include <gtest/gtest.h>

#include <set>

#include "data/sampler.h"
#include "dist/communicator.h"

namespace unidiff::data {
namespace {

constexpr int64_t kN = 97, kBatch = 12;  // 8 global batches per epoch, 1 sample dropped

std::set<int64_t> as_set(const torch::Tensor& t) {
  return {t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel()};
}

TEST(ShardedSamplerDist, GatheredSharesAreTheSingleProcessGlobalBatch) {
  auto comm = dist::make_world_communicator();
  ShardedSampler mine(kN, kBatch, comm->size(), comm->rank(), 5);
  ShardedSampler single(kN, kBatch, 1, 0, 5);
  std::set<int64_t> epoch;
  for (int k = 0; k < 20; ++k) {  // crosses two epoch boundaries
    const torch::Tensor share = mine.next();
    ASSERT_EQ(share.size(0), kBatch / comm->size());
    const torch::Tensor all = comm->all_gather(share);
    const std::set<int64_t> u = as_set(all);
    EXPECT_EQ(u.size(), static_cast<size_t>(kBatch)) << "shares overlap at batch " << k;
    EXPECT_EQ(u, as_set(single.next())) << "batch " << k;
    if (k < 8) epoch.insert(u.begin(), u.end());
  }
  EXPECT_EQ(epoch.size(), 96u);  // the first epoch covers all but the dropped sample
}

TEST(ShardedSamplerDist, ResumeContinuesTheSequence) {
  auto comm = dist::make_world_communicator();
  ShardedSampler straight(kN, kBatch, comm->size(), comm->rank(), 9);
  for (int k = 0; k < 5; ++k) straight.next();
  // A position saved by a one-rank run after 5 batches resumes here at this world size.
  ShardedSampler one(kN, kBatch, 1, 0, 9);
  for (int k = 0; k < 5; ++k) one.next();
  ShardedSampler resumed(kN, kBatch, comm->size(), comm->rank(), 9);
  resumed.set_position(one.position());
  for (int k = 5; k < 15; ++k) EXPECT_TRUE(torch::equal(resumed.next(), straight.next())) << k;
}

}  // namespace
}  // namespace unidiff::data
