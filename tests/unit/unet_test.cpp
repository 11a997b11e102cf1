// The UNet: the DDPM CIFAR-10 configuration has exactly the reference network's 35,746,307
// parameters, and a small configuration loaded with the PyTorch reference's weights (written by
// tests/reference/unet_reference.py, state-dict names one to one) gives its output.
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include <cstdlib>
#include <vector>

#include "core/h5.h"
#include "test_util.h"
#include "models/network.h"
#include "core/philox.h"
#include "core/rng.h"
#include "models/keyed_dropout.h"
#include "models/unet.h"

namespace unidiff::models {
namespace {

using testing::small_unet_config;

TEST(Unet, DdpmCifar10ConfigurationHas35746307Parameters) {
  NetworkConfig c;
  c.arch = "unet";
  c.data_shape = {3, 32, 32};  // defaults: ch 128, mult 1,2,2,2, 2 blocks, attention at 16
  const auto net = make_network(c);
  EXPECT_EQ(testing::count_parameters(*net), 35746307);
  if (const char* p = std::getenv("UNIDIFF_UNET_REFERENCE")) {
    EXPECT_EQ(testing::count_parameters(*net), *h5::read_attr_int(h5::File::open_read(p), "/", "full_params"));
  }
}

TEST(Unet, ForwardMatchesThePyTorchReferenceOnItsWeights) {
  UD_REFERENCE_FILE(p, "UNIDIFF_UNET_REFERENCE");
  const h5::File f = h5::File::open_read(p);
  // The configuration unet_reference.py builds: UNet(ch=32, mult=(1, 2), nres=1, attn_res=(8,), res=16).
  auto net = make_network(small_unet_config({3, 16, 16}, 8));
  net->eval();
  testing::load_reference_params(*net, f, "/small/params");
  if (::testing::Test::HasFatalFailure()) return;
  torch::NoGradGuard no_grad;
  const torch::Tensor y = net->forward(h5::read_tensor(f, "/small/x"), h5::read_tensor(f, "/small/t"));
  const torch::Tensor want = h5::read_tensor(f, "/small/y");
  EXPECT_TRUE(torch::allclose(y, want, 1e-4, 1e-5))
      << "max difference " << (y - want).abs().max().item<float>();
}

TEST(Unet, ClassConditioningAddsOneEmbeddingRowPerClassPlusTheNullClass) {
  NetworkConfig c = small_unet_config({1, 8, 8}, 4);
  const auto plain = make_network(c);
  c.num_classes = 5;
  torch::manual_seed(1);
  auto cond = make_network(c);
  cond->eval();
  EXPECT_EQ(testing::count_parameters(*cond) - testing::count_parameters(*plain), (5 + 1) * 4 * 32);  // K + 1 rows of the time width
  EXPECT_EQ(cond->num_classes(), 5);
  const torch::Tensor x = torch::randn({3, 1, 8, 8}), t = torch::tensor({10.0f, 500.0f, 990.0f});
  torch::NoGradGuard no_grad;
  const auto y0 = cond->forward_cond(x, t, torch::full({3}, 0, torch::kInt64));
  const auto y1 = cond->forward_cond(x, t, torch::full({3}, 1, torch::kInt64));
  EXPECT_GT((y0 - y1).abs().max().item<float>(), 0.0f);  // the label reaches the output
  // No labels = the null class K for every sample.
  EXPECT_TRUE(torch::equal(cond->forward(x, t), cond->forward_cond(x, t, torch::full({3}, 5, torch::kInt64))));
  EXPECT_ANY_THROW(plain->forward_cond(x, t, torch::zeros({3}, torch::kInt64)));
}

TEST(Unet, RefusesShapesItCannotTake) {
  NetworkConfig c;
  c.arch = "unet";
  c.data_shape = {2};
  EXPECT_ANY_THROW(make_network(c));
  c.data_shape = {1, 28, 28};
  c.channels = 48;  // not a multiple of 32
  EXPECT_ANY_THROW(make_network(c));
  c.channels = 32;
  c.channel_mult = {1, 2, 2, 2};  // 28 is not divisible by 8
  EXPECT_ANY_THROW(make_network(c));
  c.channel_mult = {1, 2, 2};
  c.attn_res = {14};
  EXPECT_NO_THROW(make_network(c));
}

}  // namespace
}  // namespace unidiff::models

namespace unidiff::models {
namespace {

TEST(KeyedDropout, MasksAreAFunctionOfTheSampleNotTheBatch) {
  // A UNet with dropout 0.5 in training mode: under a key, the output for a batch is the rows'
  // outputs computed in any split (what makes a step world-size invariant and resumable), and
  // another step draws other masks.
  const NetworkConfig c = small_unet_config({1, 8, 8}, 0, 0.5);
  torch::manual_seed(1);
  auto net = make_network(c);
  net->train();
  const torch::Tensor x = torch::randn({4, 1, 8, 8}), t = torch::tensor({1.0, 50.0, 300.0, 900.0});
  const torch::Tensor idx = torch::tensor({10, 11, 12, 13}, torch::kInt64);
  torch::NoGradGuard no_grad;
  auto run = [&](int64_t lo, int64_t hi, uint64_t step) {
    const DropoutKeyScope key({7, step, idx.slice(0, lo, hi)});
    return net->forward(x.slice(0, lo, hi), t.slice(0, lo, hi));
  };
  const torch::Tensor whole = run(0, 4, 3);
  EXPECT_TRUE(torch::allclose(whole, torch::cat({run(0, 1, 3), run(1, 4, 3)}), 1e-5, 1e-6));
  EXPECT_TRUE(torch::equal(whole, run(0, 4, 3)));
  EXPECT_FALSE(torch::allclose(whole, run(0, 4, 4), 1e-3, 1e-3));
  // Dropout is active: the eval-mode output differs; half the elements of a mask are kept.
  net->eval();
  const torch::Tensor clean = net->forward(x, t);
  EXPECT_FALSE(torch::allclose(whole, clean, 1e-3, 1e-3));
  const DropoutKeyScope key({7, 3, torch::arange(4000, torch::kInt64)});
  const torch::Tensor kept = keyed_dropout(torch::ones({4000, 10}), 0.5, true, 0);
  EXPECT_NEAR((kept > 0).to(torch::kFloat64).mean().item<double>(), 0.5, 0.02);
  EXPECT_EQ(kept.max().item<double>(), 2.0);
  EXPECT_TRUE(torch::equal(keyed_dropout(torch::ones({3, 2}), 0.5, false, 0), torch::ones({3, 2})));
}

TEST(KeyedDropout, ChannelsLastElementsAreNumberedInChannelHeightWidthOrder) {
  // The fused CUDA kernel finds an element's word from its position in memory: for a
  // channels-last sample that position's logical [C, H, W] number must be what ATen's layout says.
  const int64_t c = 3, h = 4, w = 5, per = c * h * w;
  const torch::Tensor numbers = torch::arange(per, torch::kInt64).view({1, c, h, w});
  const torch::Tensor stored = numbers.contiguous(at::MemoryFormat::ChannelsLast);
  // The storage order of a channels-last tensor is its [N, H, W, C] permutation, flattened.
  const torch::Tensor in_memory = stored.permute({0, 2, 3, 1}).flatten();
  for (int64_t r = 0; r < per; ++r) {
    ASSERT_EQ(rng::logical_index(r, per, c, true), in_memory[r].item<int64_t>()) << "position " << r;
    ASSERT_EQ(rng::logical_index(r, per, c, false), r);
  }
}

TEST(KeyedDropout, FusedCudaKernelEqualsTheCompositeBitForBit) {
  // On CUDA keyed_dropout runs one kernel forward and one backward (the mask drawn again from the
  // key); it must equal x * (uniform >= p) * scale with autograd, and the CPU's numbers, bit for bit.
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device here (checked on the GPU host)";
  const torch::Device cuda(torch::kCUDA, 0);
  const double p = 0.3;
  const torch::Tensor idx = torch::tensor({5, 900, int64_t{1} << 33}, torch::kInt64);
  for (const auto dtype : {torch::kFloat, torch::kBFloat16}) {
    for (const bool cl : {false, true}) {
      for (const bool counter : {false, true}) {
        SCOPED_TRACE(std::string(c10::toString(dtype)) + (cl ? " NHWC" : " NCHW") + (counter ? " counter" : " host"));
        torch::manual_seed(3);
        const auto fmt = cl ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
        const torch::Tensor x0 = torch::randn({3, 6, 5, 7}).to(dtype).contiguous(fmt);
        const torch::Tensor g = torch::randn({3, 6, 5, 7}).to(dtype).contiguous(fmt);
        const DropoutKey key = counter ? DropoutKey(11, 0, idx.to(cuda), torch::tensor(int64_t{42}).to(cuda))
                                       : DropoutKey(11, 42, idx);
        const DropoutKeyScope scope(key);
        const torch::Tensor x = x0.to(cuda).requires_grad_(true);
        const torch::Tensor y = keyed_dropout(x, p, true, 9);
        y.backward(g.to(cuda));
        EXPECT_EQ(y.scalar_type(), dtype);
        EXPECT_TRUE(y.is_contiguous(fmt));
        // The composite with autograd (what runs on the CPU), on the same device and on the CPU:
        // uniforms of step 42 and layer 9.
        for (const torch::Device where : {cuda, torch::Device(torch::kCPU)}) {
          if (where.is_cpu() && dtype != torch::kFloat) continue;  // ATen's CPU and CUDA bf16 products may differ
          const torch::Tensor xc = x0.to(where).requires_grad_(true);
          const torch::Tensor u =
              rng::uniform({11, rng::Purpose::kDropout}, (uint64_t{42} << 16) | 9u, idx, {6, 5, 7}, where);
          const torch::Tensor yc = xc * (u >= p).to(dtype) * (1.0 / (1.0 - p));
          yc.backward(g.to(where));
          EXPECT_TRUE(torch::equal(y.detach().cpu(), yc.detach().cpu())) << "forward vs " << where;
          EXPECT_TRUE(torch::equal(x.grad().cpu(), xc.grad().cpu())) << "backward vs " << where;
        }
      }
    }
  }
}

}  // namespace
}  // namespace unidiff::models
