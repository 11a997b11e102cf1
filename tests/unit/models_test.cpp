// Networks and EMA: embedding values from their definition, the registry, the MLP's shapes and
// parameter count, and the EMA's closed form.
#include <gtest/gtest.h>

#include <map>
#include <numbers>

#include "core/error.h"
#include "models/ema.h"
#include "models/embeddings.h"
#include "models/mlp.h"
#include "models/network.h"
#include "test_util.h"

namespace unidiff::models {
namespace {

TEST(Embedding, SinusoidalValues) {
  const torch::Tensor e = sinusoidal_embedding(torch::tensor({0.0f, 2.0f}), 4, 10000);
  // dim 4 -> h = 2, frequencies 1 and 10000^(-1/2) = 0.01.
  const torch::Tensor expect = torch::tensor(
      {{0.0f, 0.0f, 1.0f, 1.0f},
       {static_cast<float>(std::sin(2.0)), static_cast<float>(std::sin(0.02)),
        static_cast<float>(std::cos(2.0)), static_cast<float>(std::cos(0.02))}});
  EXPECT_TRUE(torch::allclose(e, expect, 1e-6, 1e-6));
}

TEST(Mlp, ShapesAndParameterCount) {
  NetworkConfig c;
  c.data_shape = {2};
  c.hidden = 16;
  c.layers = 2;
  c.time_dim = 8;
  auto net = make_network(c);
  EXPECT_EQ(net->forward(torch::randn({5, 2}), torch::arange(5)).sizes(), torch::IntArrayRef({5, 2}));
  int64_t n = 0;
  for (const auto& p : net->parameters()) n += p.numel();
  // time_in 8*16+16, time_hidden 16*16+16, input 2*16+16, 2 x (layer 16*16+16, time_proj 16*16+16),
  // output 16*2+2.
  EXPECT_EQ(n, (8 * 16 + 16) + (16 * 16 + 16) + (2 * 16 + 16) + 2 * 2 * (16 * 16 + 16) + (16 * 2 + 2));
}

TEST(Mlp, FourierFeaturesFeedTheFirstLayer) {
  // With K = 2 octaves the first layer sees [x1, x2, sin(pi x1), sin(2 pi x1), sin(pi x2), sin(2 pi x2),
  // cos(...) likewise]: the output equals an MLP without features whose first layer is given that
  // vector by hand (same weights), and the first layer is 2 * (1 + 2 * 2) wide.
  torch::manual_seed(3);
  NetworkConfig c;
  c.data_shape = {2};
  c.hidden = 8;
  c.layers = 1;
  c.time_dim = 4;
  c.fourier = 2;
  auto net = make_network(c);
  const torch::Tensor x = torch::randn({6, 2});
  const torch::Tensor t = torch::arange(6).to(torch::kFloat32);
  std::map<std::string, torch::Tensor> params;
  for (const auto& p : net->named_parameters()) params[p.key()] = p.value();
  ASSERT_EQ(params.at("input.weight").sizes(), torch::IntArrayRef({8, 10}));
  // The same network on the hand-made features: fourier 0 and data_dim 10, weights copied.
  NetworkConfig plain = c;
  plain.fourier = 0;
  plain.data_shape = {10};
  auto ref = make_network(plain);
  {
    torch::NoGradGuard g;
    for (auto& p : ref->named_parameters()) {
      const torch::Tensor& src = params.at(p.key());
      if (p.key().rfind("output", 0) == 0) p.value().zero_().narrow(0, 0, 2).copy_(src);
      else p.value().copy_(src);
    }
  }
  std::vector<torch::Tensor> cols{x.select(1, 0), x.select(1, 1)};
  for (const char* fn : {"sin", "cos"}) {
    for (int64_t d = 0; d < 2; ++d) {
      for (int64_t k = 0; k < 2; ++k) {
        const torch::Tensor a = x.select(1, d).to(torch::kFloat64) * (std::numbers::pi * (1 << k));
        cols.push_back((std::string(fn) == "sin" ? torch::sin(a) : torch::cos(a)).to(torch::kFloat32));
      }
    }
  }
  const torch::Tensor features = torch::stack(cols, 1);
  const torch::Tensor want = ref->forward(features, t).narrow(1, 0, 2);
  EXPECT_TRUE(torch::allclose(net->forward(x, t), want, 1e-5, 1e-5));
  // Only for the mlp, and a bounded number of octaves.
  c.fourier = 17;
  EXPECT_THROW(make_network(c), InputError);
  c.fourier = 2;
  c.arch = "unet";
  c.data_shape = {1, 8, 8};
  EXPECT_THROW(make_network(c), InputError);
}

TEST(Registry, RejectsUnknownArchitecturesAndShapes) {
  NetworkConfig c;
  c.data_shape = {2};
  c.arch = "transformer";
  EXPECT_THROW(make_network(c), InputError);
  c.arch = "mlp";
  c.data_shape = {1, 28, 28};
  EXPECT_THROW(make_network(c), InputError);
}

// A guidance-conditioned network (LCM, guided distillation): its parameters are the unguided
// network's followed by the guidance embedding's, which starts at zero, so the guided copy of a
// network gives the network's conditional output at every w; once the embedding is trained
// (perturbed here) the output depends on w. Asking a guided network without w, an unguided one
// with w, or for a guided mlp or an unconditional network is refused.
TEST(Guidance, AGuidedCopyStartsAsTheConditionalNetworkAtEveryW) {
  NetworkConfig unet = testing::small_unet_config({1, 8, 8}, 0);
  NetworkConfig dit;
  dit.arch = "dit";
  dit.data_shape = {1, 8, 8};
  dit.hidden = 32;
  dit.depth = 1;
  dit.heads = 2;
  for (NetworkConfig c : {unet, dit}) {
    c.num_classes = 3;
    torch::manual_seed(2);
    const auto plain = make_network(c);
    c.guidance = 1;
    const auto guided = make_network(c);
    const auto a = plain->parameters(), b = guided->parameters();
    ASSERT_GT(b.size(), a.size()) << c.arch;
    torch::NoGradGuard no_grad;
    for (const auto& p : a) p.normal_(0, 0.1);  // DiT's output layers start at zero: give them weights
    for (size_t i = 0; i < a.size(); ++i) {
      ASSERT_EQ(a[i].sizes(), b[i].sizes()) << c.arch << " parameter " << i;
      b[i].copy_(a[i]);
    }
    for (size_t i = a.size(); i < b.size(); ++i) EXPECT_EQ(b[i].abs().max().item<float>(), 0.0f) << c.arch;
    plain->eval();
    guided->eval();
    EXPECT_TRUE(guided->guided());
    EXPECT_FALSE(plain->guided());
    const torch::Tensor x = torch::randn({3, 1, 8, 8}), t = torch::tensor({10.0f, 500.0f, 990.0f});
    const torch::Tensor y = torch::tensor({0, 1, 2}, torch::kInt64);
    const torch::Tensor want = plain->forward_cond(x, t, y);
    for (double w : {1.0, 2.5, 7.0}) {
      EXPECT_TRUE(torch::equal(guided->forward_guided(x, t, y, torch::full({3}, w)), want)) << c.arch << " w " << w;
    }
    for (size_t i = a.size(); i < b.size(); ++i) b[i].normal_();
    const torch::Tensor y1 = guided->forward_guided(x, t, y, torch::full({3}, 1.0));
    const torch::Tensor y3 = guided->forward_guided(x, t, y, torch::full({3}, 3.0));
    EXPECT_GT((y1 - y3).abs().max().item<float>(), 1e-3) << c.arch;
    EXPECT_NE(testing::input_error_of([&] { guided->forward_cond(x, t, y); }).find("called with w"),
              std::string::npos);
    EXPECT_NE(testing::input_error_of([&] { plain->forward_guided(x, t, y, torch::ones({3})); })
                  .find("no guidance embedding"),
              std::string::npos);
    c.num_classes = 0;
    EXPECT_THROW(make_network(c), InputError) << c.arch;
  }
  NetworkConfig mlp;
  mlp.data_shape = {2};
  mlp.guidance = 1;
  EXPECT_THROW(make_network(mlp), InputError);
}

TEST(Ema, FollowsTheWarmedUpDecay) {
  // One parameter starting at 0 whose live value is 1: after k updates the shadow is
  // 1 - prod_{j<k} d_j with d_j = min(decay, (1 + j) / (10 + j)).
  auto lin = torch::nn::Linear(torch::nn::LinearOptions(1, 1).bias(false));
  torch::NoGradGuard g;
  lin->weight.fill_(0);
  Ema ema(*lin, 0.5);
  lin->weight.fill_(1);
  double prod = 1;
  for (int j = 0; j < 12; ++j) {
    ema.update(*lin);
    prod *= std::min(0.5, (1.0 + j) / (10.0 + j));
    EXPECT_NEAR(ema.shadow()[0].second.item<float>(), 1 - prod, 1e-6) << j;
  }
  auto other = torch::nn::Linear(torch::nn::LinearOptions(1, 1).bias(false));
  ema.copy_to(*other);
  EXPECT_NEAR(other->weight.item<float>(), 1 - prod, 1e-6);
}

TEST(Ema, ParametersSharingAFlatBufferAverageAsThePlainFormula) {
  // A reducer keeps a group's parameters as views of flat buckets (with gaps); the EMA then
  // averages each bucket as one tensor. Each parameter's shadow must still follow
  // s <- d s + (1 - d) p (float64 reference), gaps and strides included.
  torch::nn::Sequential net(torch::nn::Linear(3, 4), torch::nn::Linear(4, 2));
  torch::NoGradGuard g;
  const torch::Tensor flat = torch::zeros({64});
  int64_t offset = 1;  // a gap before the first parameter, and between them
  for (auto& p : net->parameters()) {
    const torch::Tensor view = flat.as_strided(p.sizes(), p.strides(), offset);
    view.copy_(p);
    p.set_(flat.storage(), offset, p.sizes(), p.strides());
    offset += p.numel() + 2;
  }
  std::vector<torch::Tensor> want;
  for (const auto& p : net->parameters()) want.push_back(p.detach().to(torch::kFloat64).clone());
  Ema ema(*net, 0.9);
  for (int j = 0; j < 15; ++j) {
    for (auto& p : net->parameters()) p.add_(torch::randn_like(p));
    ema.update(*net);
    const double d = std::min(0.9, (1.0 + j) / (10.0 + j));
    size_t i = 0;
    for (const auto& p : net->parameters()) {
      want[i] = d * want[i] + (1 - d) * p.to(torch::kFloat64);
      ++i;
    }
  }
  ASSERT_EQ(ema.shadow().size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_TRUE(torch::allclose(ema.shadow()[i].second.to(torch::kFloat64), want[i], 1e-5, 1e-6)) << ema.shadow()[i].first;
  }
}

}  // namespace
}  // namespace unidiff::models
