// Distribution matching against closed forms (objectives/distill/dmd.h, FORMULAS.md section 5).
// For Gaussian data N(mu_r, s_r^2) and a Gaussian generator x = mu_g + s_g z with exact real and
// fake denoisers (the real one from the mixture oracle), the matching direction with
// c_t = alpha_t^2 / sigma_t^2 applied through direction_loss gives the analytic gradient of the KL
// between the noised distributions, averaged over the same times; VSD's eps difference and DMD's
// weight against their definitions; the GAN losses against their formulas; the backward
// simulation's inputs are the states the generator's own multistep sampler feeds it.
#include <gtest/gtest.h>

#include <cmath>

#include "core/rng.h"
#include "models/gmm.h"
#include "objectives/distill/dmd.h"
#include "objectives/sampling/ode.h"
#include "objectives/schedule.h"

namespace unidiff::objectives {
namespace {

/// E[x0 | x_t] for x0 ~ N(mu, s^2) (per dimension), x_t = a x0 + g eps.
torch::Tensor gaussian_x0(const torch::Tensor& x_t, double mu, double s, double a, double g) {
  return mu + a * s * s * (x_t - a * mu) / (a * a * s * s + g * g);
}

TEST(DistributionMatching, TheKlDirectionIsTheAnalyticKlGradient) {
  const Schedule sch = Schedule::ddpm_schedule(BetaSchedule::kLinear, 1000);
  const double mu_r = 0.7, s_r = 0.4;
  const models::GaussianMixture real(torch::tensor({1.0}, torch::kFloat64), torch::tensor({{mu_r}}, torch::kFloat64),
                                     torch::tensor({{s_r}}, torch::kFloat64));
  const int64_t n = 400000;
  const std::vector<int64_t> ts{50, 200, 400, 600, 800};
  const torch::Tensor z = rng::normal({1, rng::Purpose::kNoise}, 0, rng::arange_indices(0, n), {1}).to(torch::kFloat64);
  const torch::Tensor mu_g = torch::tensor(0.2, torch::dtype(torch::kFloat64).requires_grad(true));
  const torch::Tensor s_g = torch::tensor(0.9, torch::dtype(torch::kFloat64).requires_grad(true));
  double want_mu = 0, want_s = 0;
  torch::Tensor loss = torch::zeros({}, torch::kFloat64);
  for (size_t i = 0; i < ts.size(); ++i) {
    const double a = sch.alpha(static_cast<double>(ts[i])), g = sch.sigma(static_cast<double>(ts[i]));
    const torch::Tensor x = mu_g + s_g * z;
    const torch::Tensor eps = rng::normal({1, rng::Purpose::kNoise}, i + 1, rng::arange_indices(0, n), {1})
                                  .to(torch::kFloat64);
    const torch::Tensor x_t = a * x.detach() + g * eps;
    const torch::Tensor x0_real = real.posterior_mean(x_t, torch::tensor(a, torch::kFloat64), torch::tensor(g, torch::kFloat64));
    const torch::Tensor x0_fake = gaussian_x0(x_t, mu_g.item<double>(), s_g.item<double>(), a, g);
    const torch::Tensor c = torch::full({n}, a * a / (g * g), torch::kFloat64);
    // direction_loss's gradient in x is g / numel (numel = n): in theta, the mean over the samples
    // of g dx/dtheta, the Monte Carlo estimate of E[g dx/dtheta].
    loss = loss + direction_loss(x, matching_direction(x0_fake, x0_real, c)) / static_cast<double>(ts.size());
    // KL(N(m1, v1) || N(m2, v2)) of the noised laws, differentiated by hand.
    const double m1 = a * 0.2, v1 = a * a * 0.81 + g * g, m2 = a * mu_r, v2 = a * a * s_r * s_r + g * g;
    want_mu += a * (m1 - m2) / v2 / static_cast<double>(ts.size());
    want_s += (-1 / v1 + 1 / v2) * a * a * 0.9 / static_cast<double>(ts.size());
  }
  loss.backward();
  // Monte Carlo with 400,000 samples per time: relative errors of a few parts in a thousand.
  EXPECT_NEAR(mu_g.grad().item<double>(), want_mu, 0.01 * std::abs(want_mu)) << want_mu;
  EXPECT_NEAR(s_g.grad().item<double>(), want_s, 0.02 * std::abs(want_s)) << want_s;
  // Descent moves the generator towards the data: mu_g up towards mu_r, its spread down towards s_r.
  EXPECT_LT(want_mu, 0);
  EXPECT_GT(want_s, 0);
}

TEST(DistributionMatching, WeightsAndGanLossesFollowTheirDefinitions) {
  const torch::Tensor x = torch::tensor({{1.0, -1.0}, {0.5, 0.5}}), x0 = torch::tensor({{0.0, 0.0}, {0.0, 1.5}});
  // DMD: 1 / mean |x - x0_real| per sample: 1 / 1 and 1 / 0.75.
  EXPECT_TRUE(torch::allclose(dmd_weight(x, x0), torch::tensor({1.0f, 1.0f / 0.75f})));
  const torch::Tensor g = matching_direction(torch::ones({2, 2}), x0, torch::tensor({2.0f, 3.0f}));
  EXPECT_TRUE(torch::allclose(g, torch::tensor({{2.0, 2.0}, {3.0, -1.5}})));
  const torch::Tensor xr = x.clone().requires_grad_(true);
  direction_loss(xr, g).backward();
  EXPECT_TRUE(torch::allclose(xr.grad(), g / 4));  // the gradient in x is g / numel
  const torch::Tensor r = torch::tensor({2.0, -1.0}), f = torch::tensor({0.5, -3.0});
  const auto sp = [](double v) { return std::log1p(std::exp(v)); };
  EXPECT_NEAR(gan_discriminator_loss(r, f).item<double>(), (sp(-2) + sp(1)) / 2 + (sp(0.5) + sp(-3)) / 2, 1e-6);
  EXPECT_NEAR(gan_generator_loss(f).item<double>(), (sp(-0.5) + sp(3)) / 2, 1e-6);
  EXPECT_NEAR(hinge_discriminator_loss(r, f).item<double>(), (0 + 2) / 2.0 + (1.5 + 0) / 2.0, 1e-6);
  EXPECT_NEAR(hinge_generator_loss(f).item<double>(), 1.25, 1e-6);
  EXPECT_EQ(generator_times(1000, 4), (std::vector<int64_t>{999, 749, 499, 249}));
  EXPECT_EQ(generator_times(1000, 1), (std::vector<int64_t>{999}));
}

TEST(DistributionMatching, BackwardSimulationFeedsTheSamplersStates) {
  const Schedule sch = Schedule::ddpm_schedule(BetaSchedule::kLinear, 1000);
  const std::vector<int64_t> times = generator_times(1000, 4);
  const int64_t n = 8;
  const torch::Tensor x_T = rng::normal({2, rng::Purpose::kSampling}, 0, rng::arange_indices(0, n), {2});
  const torch::Tensor z = rng::normal({2, rng::Purpose::kBackwardSim}, 0, rng::arange_indices(0, n), {3, 2});
  const NoiseFn noise = [&z](int64_t i) { return z.select(1, i); };
  // Any deterministic "generator": its inputs are recorded by the sampler below.
  const GeneratorFn gen = [](const torch::Tensor& x, const torch::Tensor& t) {
    return torch::tanh(x) * (t.view({-1, 1}) / 1000.0) + 0.1;
  };
  std::vector<torch::Tensor> fed;
  const ConsistencyFn f = [&](const torch::Tensor& x, double t) {
    fed.push_back(x);
    return gen(x, torch::full({x.size(0)}, t));
  };
  std::vector<double> tt(times.begin(), times.end());
  sample_multistep(f, sch, x_T, tt, noise);
  ASSERT_EQ(fed.size(), 4u);
  const torch::Tensor k = torch::tensor({0, 1, 2, 3, 3, 2, 1, 0}, torch::kInt64);
  const GeneratorInput in = backward_simulation(gen, sch, x_T, times, k, noise);
  for (int64_t b = 0; b < n; ++b) {
    const int64_t kb = k[b].item<int64_t>();
    EXPECT_TRUE(torch::allclose(in.x[b], fed[static_cast<size_t>(kb)][b], 1e-6, 1e-6)) << "sample " << b;
    EXPECT_EQ(in.t[b].item<float>(), static_cast<float>(times[static_cast<size_t>(kb)])) << "sample " << b;
  }
}

}  // namespace
}  // namespace unidiff::objectives
