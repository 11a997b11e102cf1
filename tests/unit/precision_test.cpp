// Mixed precision and channels-last (models/precision.h): the autocast scope turns bfloat16 on
// and restores the previous state; a UNet's bf16 loss and gradients stay close to float32 while
// the weights and gradients remain float32 (master weights); channels-last weights and inputs
// give the contiguous network's output and gradients.
#include <gtest/gtest.h>

#include <ATen/autocast_mode.h>

#include "core/error.h"
#include "core/rng.h"
#include "models/keyed_dropout.h"
#include "models/network.h"
#include "models/precision.h"
#include "test_util.h"

namespace unidiff::models {
namespace {

std::shared_ptr<Network> small_unet(uint64_t seed) {
  torch::manual_seed(seed);
  return make_network(testing::small_unet_config({3, 16, 16}, 8, 0.0));
}

struct Batch {
  torch::Tensor x, t;
};

Batch batch() {
  const torch::Tensor idx = torch::arange(4, torch::kInt64);
  return {rng::normal({5, rng::Purpose::kNoise}, 0, idx, {3, 16, 16}),
          rng::randint({5, rng::Purpose::kTimestep}, 0, idx, 1000).to(torch::kFloat32)};
}

/// eps-style loss and the flattened gradient.
std::pair<double, torch::Tensor> loss_and_grad(Network& net, const Batch& b, const std::string& precision,
                                               bool channels_last) {
  for (auto& p : net.parameters()) p.mutable_grad() = torch::Tensor();
  torch::Tensor loss;
  {
    const AutocastScope autocast(torch::kCPU, precision);
    const torch::Tensor y = net.forward(to_layout(b.x, channels_last), b.t);
    loss = (y - b.x).pow(2).mean();
  }
  loss.backward();
  std::vector<torch::Tensor> g;
  for (const auto& p : net.parameters()) {
    EXPECT_EQ(p.scalar_type(), torch::kFloat32);
    EXPECT_EQ(p.grad().scalar_type(), torch::kFloat32);
    g.push_back(p.grad().reshape(-1));
  }
  return {loss.item<double>(), torch::cat(g)};
}

double cosine(const torch::Tensor& a, const torch::Tensor& b) {
  return (a * b).sum().item<double>() / (a.norm().item<double>() * b.norm().item<double>());
}

TEST(Precision, AutocastScopeTurnsBfloat16OnAndRestoresTheStateItFound) {
  const torch::Tensor a = torch::randn({4, 4});
  EXPECT_FALSE(at::autocast::is_autocast_enabled(torch::kCPU));
  {
    const AutocastScope outer(torch::kCPU, "bf16");
    EXPECT_EQ(torch::mm(a, a).scalar_type(), torch::kBFloat16);
    {
      const AutocastScope off(torch::kCPU, "fp32");  // fp32 leaves the outer scope in force
      EXPECT_EQ(torch::mm(a, a).scalar_type(), torch::kBFloat16);
    }
    {
      const AutocastScope inner(torch::kCPU, true);
      EXPECT_EQ(torch::mm(a, a).scalar_type(), torch::kBFloat16);
    }
    EXPECT_TRUE(at::autocast::is_autocast_enabled(torch::kCPU));
  }
  EXPECT_FALSE(at::autocast::is_autocast_enabled(torch::kCPU));
  EXPECT_EQ(torch::mm(a, a).scalar_type(), torch::kFloat32);
}

TEST(Precision, OnlyFp32AndBf16AreAccepted) {
  EXPECT_NO_THROW(validate_precision("fp32"));
  EXPECT_NO_THROW(validate_precision("bf16"));
  EXPECT_THROW(validate_precision("fp16"), InputError);
}

TEST(Precision, Bf16UnetLossAndGradientsStayCloseToFloat32WithFloat32MasterWeights) {
  auto net = small_unet(3);
  const Batch b = batch();
  const auto [l32, g32] = loss_and_grad(*net, b, "fp32", false);
  const auto [l16, g16] = loss_and_grad(*net, b, "bf16", false);
  // bfloat16 keeps 8 bits of mantissa: relative rounding 2^-8 per operation.
  EXPECT_NEAR(l16, l32, 0.03 * l32);
  EXPECT_GT(cosine(g16, g32), 0.99);
  EXPECT_NEAR(g16.norm().item<double>(), g32.norm().item<double>(), 0.05 * g32.norm().item<double>());
  EXPECT_FALSE(torch::equal(g16, g32));  // the bf16 pass really ran in bfloat16
}

TEST(Precision, ChannelsLastGivesTheContiguousOutputAndGradients) {
  auto plain = small_unet(4);
  auto nhwc = small_unet(4);
  set_channels_last(*nhwc, true);
  int64_t converted = 0;
  for (const auto& p : nhwc->parameters()) {
    if (p.dim() != 4) continue;
    EXPECT_TRUE(p.is_contiguous(at::MemoryFormat::ChannelsLast));
    converted += p.size(2) > 1 || p.size(3) > 1 ? 1 : 0;
  }
  EXPECT_GT(converted, 5);
  const Batch b = batch();
  EXPECT_TRUE(to_layout(b.x, true).is_contiguous(at::MemoryFormat::ChannelsLast));
  EXPECT_TRUE(to_layout(b.t, true).equal(b.t));
  const auto [l1, g1] = loss_and_grad(*plain, b, "fp32", false);
  const auto [l2, g2] = loss_and_grad(*nhwc, b, "fp32", true);
  EXPECT_NEAR(l1, l2, 1e-5 * l1);
  EXPECT_TRUE(torch::allclose(g1, g2, 1e-4, 1e-6)) << "max difference " << (g1 - g2).abs().max().item<double>();
  set_channels_last(*nhwc, false);
  for (const auto& p : nhwc->parameters()) EXPECT_TRUE(p.is_contiguous());
}

}  // namespace
}  // namespace unidiff::models
