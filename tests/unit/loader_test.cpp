// The prefetching loader returns exactly the sampler's sequence whatever it reads ahead, counts
// its position by batches returned, resumes from a saved position, flips by a keyed coin, and
// reports reader failures to the caller.
#include <gtest/gtest.h>

#include "core/error.h"
#include "data/loader.h"

namespace unidiff::data {
namespace {

TensorDataset numbered(int64_t n) {
  // Sample i is the 1x1x2 "image" [i, -i] (floats), so a batch shows which samples it holds.
  const torch::Tensor i = torch::arange(n, torch::kFloat32);
  return TensorDataset(torch::stack({i, -i}, 1).view({n, 1, 1, 2}));
}

TEST(Loader, SameSequenceAsTheSamplerForAnyPrefetch) {
  const TensorDataset ds = numbered(50);
  for (int64_t prefetch : {1, 3, 16}) {
    LoaderOptions o;
    o.prefetch = prefetch;
    Loader loader(ds, ShardedSampler(50, 6, 2, 1, 4), o);
    ShardedSampler reference(50, 6, 2, 1, 4);
    for (int k = 0; k < 20; ++k) {
      const Batch b = loader.next();
      const torch::Tensor idx = reference.next();
      EXPECT_TRUE(torch::equal(b.index, idx)) << "prefetch " << prefetch << " batch " << k;
      EXPECT_TRUE(torch::equal(b.x.select(3, 0).flatten(), idx.to(torch::kFloat32)));
      EXPECT_EQ(loader.position(), (k + 1) * 6);
    }
  }
}

TEST(Loader, ResumesFromASavedPosition) {
  const TensorDataset ds = numbered(40);
  Loader straight(ds, ShardedSampler(40, 4, 1, 0, 2), {});
  for (int k = 0; k < 7; ++k) straight.next();
  ShardedSampler s(40, 4, 1, 0, 2);
  s.set_position(straight.position());
  Loader resumed(ds, s, {});
  for (int k = 0; k < 10; ++k) EXPECT_TRUE(torch::equal(resumed.next().index, straight.next().index));
}

TEST(Loader, KeyedFlipsAreDeterministicAndAboutHalf) {
  const torch::Tensor img = torch::arange(8, torch::kFloat32).view({1, 1, 2, 4}).expand({1000, 1, 2, 4});
  const torch::Tensor idx = torch::arange(1000, torch::kInt64);
  const torch::Tensor a = keyed_hflip(img, idx, 3, 5);
  EXPECT_TRUE(torch::equal(a, keyed_hflip(img, idx, 3, 5)));
  const torch::Tensor flipped = (a == img.flip({3})).flatten(1).all(1);
  const torch::Tensor kept = (a == img).flatten(1).all(1);
  EXPECT_TRUE(torch::equal(flipped | kept, torch::ones({1000}, torch::kBool)));
  EXPECT_NEAR(flipped.to(torch::kFloat64).mean().item<double>(), 0.5, 0.07);  // 4.4 sd of 1000 coins
  EXPECT_FALSE(torch::equal(a, keyed_hflip(img, idx, 3, 6)));  // a new step, new coins
}

TEST(Loader, RefusesFlipsOnVectorsAndBadPrefetch) {
  const TensorDataset vec(torch::zeros({10, 2}));
  LoaderOptions o;
  o.hflip = true;
  EXPECT_THROW(Loader(vec, ShardedSampler(10, 2, 1, 0, 0), o), InputError);
  o.hflip = false;
  o.prefetch = 0;
  EXPECT_THROW(Loader(vec, ShardedSampler(10, 2, 1, 0, 0), o), InputError);
}

}  // namespace
}  // namespace unidiff::data
