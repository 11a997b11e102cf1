// Toy distributions: determinism, the prefix property, and each set's defining geometry.
#include <gtest/gtest.h>

#include <numbers>

#include "core/error.h"
#include "data/toy.h"

namespace unidiff::data {
namespace {

TEST(Toy, DeterministicAndPrefixStable) {
  for (const auto& name : toy_names()) {
    const torch::Tensor a = make_toy(name, 500, 3);
    EXPECT_EQ(a.sizes(), torch::IntArrayRef({500, 2})) << name;
    EXPECT_TRUE(torch::equal(a, make_toy(name, 500, 3))) << name;
    EXPECT_TRUE(torch::equal(a.slice(0, 0, 100), make_toy(name, 100, 3))) << name;
    EXPECT_FALSE(torch::equal(a, make_toy(name, 500, 4))) << name;
  }
}

TEST(Toy, UnknownNameListsTheValidOnes) {
  try {
    make_toy("spiral", 10, 0);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("moons"), std::string::npos) << e.what();
  }
}

TEST(Toy, CheckerboardPointsLieOnTheDarkSquares) {
  // x1 in [-2, 2); x2 = u - 2k + (floor(x1) mod 2), so floor(x1) + floor(x2) is always even.
  const torch::Tensor x = make_toy("checkerboard", 5000, 0);
  const torch::Tensor parity = torch::remainder(torch::floor(x.select(1, 0)) + torch::floor(x.select(1, 1)), 2);
  EXPECT_EQ(parity.abs().max().item<float>(), 0.0f);
  EXPECT_GE(x.min().item<float>(), -2.0f);
  EXPECT_LT(x.max().item<float>(), 2.0f);
}

TEST(Toy, EightGaussiansClusterAroundTheirCentres) {
  // Centres 2 (cos k pi/4, sin k pi/4), std 0.2: every point within 5 std of its nearest centre,
  // and each of the 8 clusters holds about 1/8 of the points.
  const torch::Tensor x = make_toy("8gaussians", 8000, 1).to(torch::kFloat64);
  const torch::Tensor k = torch::arange(8, torch::kFloat64) * (std::numbers::pi / 4);
  const torch::Tensor centres = torch::stack({torch::cos(k), torch::sin(k)}, 1) * 2;
  const auto [dist, which] = torch::cdist(x, centres).min(1);
  EXPECT_LT(dist.max().item<double>(), 1.0);
  const torch::Tensor counts = torch::bincount(which, {}, 8).to(torch::kFloat64);
  EXPECT_LT((counts - 1000).abs().max().item<double>(), 150);  // ~5 sd of Binomial(8000, 1/8)
}

TEST(Toy, GaussianIsStandardNormal) {
  const torch::Tensor x = make_toy("gaussian", 20000, 2).to(torch::kFloat64);
  EXPECT_LT(x.mean(0).abs().max().item<double>(), 0.03);  // 4 standard errors
  EXPECT_LT((x.std(0) - 1).abs().max().item<double>(), 0.03);
}

}  // namespace
}  // namespace unidiff::data
