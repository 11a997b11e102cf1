// Consistency distillation against closed forms (objectives/distill/consistency_distillation.h).
// Data N(mu, s^2) per coordinate; the teacher is the exact denoiser of the noised Gaussian,
// x0_hat = mu + a s^2 (x - a mu) / (a^2 s^2 + g^2) at alpha a, sigma g. The fixed point of discrete
// k-step CD with that teacher is the consistency function of the teacher's own DDIM chain,
// f(x, g_i) = the chain from g_i down the grid to clean data: a student equal to it has zero loss
// for every grid index and every k, and zero gradient; a perturbed one does not. The chain from
// g_0 approaches the probability-flow ODE's exact map mu + s (x - a mu) / sqrt(a^2 s^2 + g^2) as
// the grid refines; the LCM boundary is the identity at clean data and c_skip(0) = 1.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include <torch/csrc/autograd/autograd.h>

#include "core/error.h"
#include "core/rng.h"
#include "objectives/distill/consistency_distillation.h"
#include "objectives/parameterization.h"
#include "objectives/sampling/ddim.h"
#include "objectives/sampling/registry.h"
#include "objectives/schedule.h"

namespace unidiff::objectives {
namespace {

constexpr double kMu = 0.7, kS = 0.4;

/// The exact teacher's eps at code indices t (float [B]).
torch::Tensor gaussian_eps(const Schedule& sch, const torch::Tensor& x, const torch::Tensor& t) {
  const Coeffs c = sch.at(t.to(torch::kFloat64));
  const torch::Tensor a = per_sample(c.alpha, x), g = per_sample(c.sigma, x);
  const torch::Tensor x0 = kMu + a * kS * kS * (x - a * kMu) / (a * a * kS * kS + g * g);
  return (x - a * x0) / g;
}

/// The teacher's DDIM chain from grid index i (the same for every sample) to clean data.
torch::Tensor chain_to_data(const Schedule& sch, const std::vector<int64_t>& grid, torch::Tensor x, size_t i) {
  for (size_t j = i; j + 1 < grid.size(); ++j) {
    const torch::Tensor t = torch::full({x.size(0)}, static_cast<double>(grid[j]), torch::kFloat64);
    const torch::Tensor s = torch::full({x.size(0)}, static_cast<double>(grid[j + 1]), torch::kFloat64);
    x = ddim_gaussian(sch, x, gaussian_eps(sch, x, t), t, s, 0.0).mean;
  }
  return x;
}

TEST(ConsistencyDistillation, GridAndBoundary) {
  const std::vector<int64_t> g = cd_grid(1000, 50);
  ASSERT_EQ(g.size(), 51u);
  EXPECT_EQ(g.front(), 999);
  EXPECT_EQ(g[25], 499);  // two-step sampling's second time is on the grid
  EXPECT_EQ(g[49], 19);
  EXPECT_EQ(g.back(), -1);
  const torch::Tensor x = torch::randn({3, 2}, torch::kFloat64), x0 = torch::randn({3, 2}, torch::kFloat64);
  EXPECT_TRUE(torch::equal(lcm_consistency(x, x0, torch::full({3}, -1.0)), x));
  EXPECT_TRUE(torch::allclose(lcm_consistency(x, x0, torch::zeros({3})), x));  // c_skip(0) = 1, c_out(0) = 0
  // From t = 20 on, c_skip < 1e-5: f is the network's x0.
  EXPECT_TRUE(torch::allclose(lcm_consistency(x, x0, torch::full({3}, 20.0)), x0, 0, 1e-5 * 4));
}

// The lcm sampler's times for a model trained on the 50-step grid are grid points
// g_{floor(j 50 / steps)}: 4 steps at 999, 759, 499, 259 (the trailing steps of T, 749 and 249,
// are not on the grid); without a grid the trailing steps of T.
TEST(ConsistencyDistillation, SamplingTimesAreOnTheTrainingGrid) {
  EXPECT_EQ(lcm_times(1000, 4, 50), (std::vector<int64_t>{999, 759, 499, 259}));
  EXPECT_EQ(lcm_times(1000, 2, 50), (std::vector<int64_t>{999, 499}));
  EXPECT_EQ(lcm_times(1000, 1, 50), (std::vector<int64_t>{999}));
  EXPECT_EQ(lcm_times(1000, 4, 0), (std::vector<int64_t>{999, 749, 499, 249}));
  const std::vector<int64_t> g = cd_grid(1000, 50);
  for (int64_t t : lcm_times(1000, 8, 50)) EXPECT_NE(std::find(g.begin(), g.end(), t), g.end()) << t;
  EXPECT_THROW(lcm_times(1000, 51, 50), InputError);
}

TEST(ConsistencyDistillation, TheDdimChainIsTheFixedPointWithZeroLossAndGradient) {
  const Schedule sch = Schedule::ddpm_schedule(BetaSchedule::kLinear, 1000);
  const int64_t n = 20, b = 64;
  const std::vector<int64_t> g = cd_grid(1000, n);
  const torch::Tensor grid = torch::tensor(g, torch::kInt64).to(torch::kFloat64);
  const torch::Tensor theta = torch::zeros({}, torch::dtype(torch::kFloat64).requires_grad(true));
  // The student: x0 such that LCM's f equals the chain's result, plus theta x (theta = 0: exact).
  const auto student = [&](const torch::Tensor& x, size_t i) {
    const torch::Tensor t = torch::full({x.size(0)}, static_cast<double>(g[i]), torch::kFloat64);
    if (g[i] < 0) return x;
    const Boundary bd = lcm_boundary(t);
    const torch::Tensor x0 = (chain_to_data(sch, g, x, i) - per_sample(bd.c_skip, x) * x) / per_sample(bd.c_out, x);
    return lcm_consistency(x, x0 + theta * x, t);
  };
  const EpsAt teacher = [&](const torch::Tensor& x, const torch::Tensor& t) { return gaussian_eps(sch, x, t); };
  for (int64_t k : {1, 3}) {
    for (int64_t i = 0; i + k <= n; i += 2) {
      const torch::Tensor x = rng::normal({3, rng::Purpose::kNoise}, static_cast<uint64_t>(i), rng::arange_indices(0, b),
                                          {2})
                                  .to(torch::kFloat64);
      const torch::Tensor idx = torch::full({b}, i, torch::kInt64);
      const torch::Tensor x_hat = cd_teacher_solve(teacher, sch, grid, x, idx, k);
      torch::Tensor target;
      {
        torch::NoGradGuard ng;
        target = student(x_hat, static_cast<size_t>(i + k));
      }
      const torch::Tensor loss = cd_distance(student(x, static_cast<size_t>(i)), target, "l2", 0).mean();
      EXPECT_LT(loss.item<double>(), 1e-20) << "i " << i << ", k " << k;
      const torch::Tensor grad = torch::autograd::grad({loss}, {theta})[0];
      EXPECT_LT(std::abs(grad.item<double>()), 1e-10) << "i " << i << ", k " << k;
    }
  }
  // A perturbed student is not a fixed point: loss and gradient away from zero (the perturbation
  // 0.05 x on both sides differs by 0.05 (x - x_hat): a loss of order 1e-6 against 1e-20).
  {
    torch::NoGradGuard ng;
    theta.fill_(0.05);
  }
  const torch::Tensor x = rng::normal({3, rng::Purpose::kNoise}, 99, rng::arange_indices(0, b), {2}).to(torch::kFloat64);
  const torch::Tensor idx = torch::full({b}, 5, torch::kInt64);
  torch::Tensor target;
  {
    torch::NoGradGuard ng;
    target = student(cd_teacher_solve(teacher, sch, grid, x, idx, 1), 6);
  }
  const torch::Tensor loss = cd_distance(student(x, 5), target, "l2", 0).mean();
  EXPECT_GT(loss.item<double>(), 1e-8);
  EXPECT_GT(std::abs(torch::autograd::grad({loss}, {theta})[0].item<double>()), 1e-6);
}

TEST(ConsistencyDistillation, TheChainApproachesTheOdesExactMap) {
  // mu + s (x - a mu) / sqrt(a^2 s^2 + g^2) at g_0 = 999: the probability-flow ODE's map for
  // Gaussian data. The DDIM chain's error shrinks as the grid refines.
  const Schedule sch = Schedule::ddpm_schedule(BetaSchedule::kLinear, 1000);
  const torch::Tensor x = rng::normal({4, rng::Purpose::kNoise}, 0, rng::arange_indices(0, 256), {2}).to(torch::kFloat64);
  const double a = sch.alpha(999.0), g = sch.sigma(999.0);
  const torch::Tensor exact = kMu + kS * (x - a * kMu) / std::sqrt(a * a * kS * kS + g * g);
  // First order: measured 0.24, 0.052, 0.0055 (max over 256 samples) at N = 20, 100, 1000.
  std::vector<double> err;
  for (int64_t n : {20, 100, 1000}) {
    err.push_back((chain_to_data(sch, cd_grid(1000, n), x, 0) - exact).abs().max().item<double>());
  }
  EXPECT_LT(err[2], 0.01);
  EXPECT_GT(err[1] / err[2], 5.0);  // ten times the steps, about a tenth of the error
  EXPECT_LT(err[1] / err[2], 20.0);
  EXPECT_GT(err[0] / err[1], 2.5);
}

TEST(ConsistencyDistillation, Distances) {
  const torch::Tensor a = torch::tensor({{1.0, 2.0}, {0.0, 0.0}}, torch::kFloat64);
  const torch::Tensor b = torch::tensor({{1.0, 0.0}, {3.0, 4.0}}, torch::kFloat64);
  EXPECT_TRUE(torch::allclose(cd_distance(a, b, "l2", 0), torch::tensor({2.0, 12.5}, torch::kFloat64)));
  EXPECT_TRUE(torch::allclose(cd_distance(a, b, "huber", 0.5),
                              torch::tensor({std::sqrt(4.25) - 0.5, std::sqrt(25.25) - 0.5}, torch::kFloat64)));
}

}  // namespace
}  // namespace unidiff::objectives
