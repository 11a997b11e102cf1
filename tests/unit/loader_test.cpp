// The prefetching loader returns exactly the sampler's sequence whatever it reads ahead, counts
// its position by batches returned, resumes from a saved position, flips by a keyed coin, and
// reports reader failures to the caller; on a CUDA device (GPU host) it delivers the CPU loader's
// batches, decoded on the device, from pinned host memory.
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include <string>

#include "core/error.h"
#include "data/loader.h"
#include "test_util.h"

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

TEST(Loader, CudaBatchesEqualCpuBatchesFromPinnedMemory) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device here (checked on the GPU host)";
  testing::TempDir dir;
  const torch::Tensor images = torch::randint(0, 256, {64, 3, 4, 6}, torch::kUInt8);
  const torch::Tensor labels = torch::arange(64, torch::kInt64).remainder(10);
  write_dataset(dir / "images.h5", images, labels, 10);
  const torch::Device cuda(torch::kCUDA, 0);
  for (const bool streaming : {false, true}) {
    const std::string path = (dir / "images.h5").string();
    const TensorDataset ds = streaming ? TensorDataset::open_streaming(path) : TensorDataset::load(path);
    for (const bool decode : {true, false}) {
      const std::string what = std::string(streaming ? "streaming" : "in memory") + (decode ? "" : ", raw");
      LoaderOptions on_cpu;
      on_cpu.hflip = true;
      on_cpu.seed = 7;
      on_cpu.decode = decode;
      LoaderOptions on_gpu = on_cpu;
      on_gpu.device = cuda;
      on_gpu.prefetch = 2;
      Loader a(ds, ShardedSampler(64, 8, 2, 1, 3), on_cpu);
      Loader b(ds, ShardedSampler(64, 8, 2, 1, 3), on_gpu);
      for (int k = 0; k < 12; ++k) {  // 3 epochs of this rank's 4 batches: flips and orders change
        const Batch x = a.next(), y = b.next();
        ASSERT_EQ(y.x.device(), cuda) << what;
        EXPECT_EQ(y.x.scalar_type(), decode ? torch::kFloat32 : torch::kUInt8) << what;
        // x / 127.5 - 1 in float32 on either device: the same numbers up to the last bit's rounding.
        EXPECT_TRUE(torch::allclose(y.x.cpu().to(torch::kFloat64), x.x.to(torch::kFloat64), 0, 1e-6))
            << what << ", batch " << k;
        EXPECT_TRUE(torch::equal(y.index, x.index)) << what << ", batch " << k;
        EXPECT_TRUE(torch::equal(y.labels, x.labels)) << what << ", batch " << k;
        // The index and labels stay on the host, pinned, so that copying them does not wait.
        EXPECT_TRUE(y.index.device().is_cpu() && y.index.is_pinned()) << what;
        EXPECT_TRUE(y.labels.device().is_cpu() && y.labels.is_pinned()) << what;
        EXPECT_FALSE(x.index.is_pinned()) << what;  // no pinning without a CUDA device
        EXPECT_EQ(b.position(), a.position());
      }
    }
  }
}

}  // namespace
}  // namespace unidiff::data
