// Networks and EMA: embedding values from their definition, the registry, the MLP's shapes and
// parameter count, and the EMA's closed form.
#include <gtest/gtest.h>

#include "core/error.h"
#include "models/ema.h"
#include "models/embeddings.h"
#include "models/mlp.h"
#include "models/network.h"

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

TEST(Registry, RejectsUnknownArchitecturesAndShapes) {
  NetworkConfig c;
  c.data_shape = {2};
  c.arch = "transformer";
  EXPECT_THROW(make_network(c), InputError);
  c.arch = "mlp";
  c.data_shape = {1, 28, 28};
  EXPECT_THROW(make_network(c), InputError);
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

}  // namespace
}  // namespace unidiff::models
