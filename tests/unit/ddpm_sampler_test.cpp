// DDPM and DDIM sampling: single steps against the PyTorch reference, timestep spacings against
// their definitions, and whole samplers against an analytic oracle: for Gaussian data
// x0 ~ N(mu, s^2 I) the exact eps-prediction is E[eps | x_t] = sigma (x_t - alpha mu) /
// (alpha^2 s^2 + sigma^2) with alpha = sqrt(abar_t), sigma = sqrt(1 - abar_t), so a correct sampler
// fed the exact eps must return N(mu, s^2 I) with enough steps, and with few steps exactly the
// Gaussian law that its affine steps imply (computed in closed form below).
#include <gtest/gtest.h>

#include "test_util.h"

#include <cstdlib>

#include "core/h5.h"
#include "core/rng.h"
#include "objectives/sampling/ddim.h"
#include "objectives/sampling/ddpm.h"

namespace unidiff::objectives {
namespace {

TEST(DdpmSampler, SingleStepsMatchThePyTorchReference) {
  UD_REFERENCE_FILE(ref, "UNIDIFF_DDPM_REFERENCE");
  const h5::File f = h5::File::open_read(ref);
  const DdpmSchedule s = DdpmSchedule::make(BetaSchedule::kLinear, 1000);
  auto get = [&](const std::string& k) { return h5::read_tensor(f, "/step/" + k); };
  const int64_t t = *h5::read_attr_int(f, "/step", "t"), prev = *h5::read_attr_int(f, "/step", "prev");
  const double eta = *h5::read_attr_double(f, "/step", "eta");
  EXPECT_TRUE(torch::allclose(ddpm_step(s, get("x_t"), get("eps"), t, prev, get("z")),
                              get("ddpm_next"), 1e-12, 1e-12));
  EXPECT_TRUE(torch::allclose(ddim_step(s, get("x_t"), get("eps"), t, prev, eta, get("z")),
                              get("ddim_next"), 1e-12, 1e-12));
}

TEST(DdpmSampler, ClippedStepsUseTheClampedX0AndItsImpliedEps) {
  // With clip_x0 the step is the unclipped step of x0_c = clamp(x0_hat, -1, 1) and of the eps
  // that x0_c implies, eps_c = (x_t - sqrt(abar_t) x0_c) / sqrt(1 - abar_t) (Ho et al.'s
  // clip_denoised), so that a step whose x0_hat is already inside [-1, 1] is unchanged.
  const DdpmSchedule s = DdpmSchedule::make(BetaSchedule::kLinear, 1000);
  const torch::Tensor idx = torch::arange(64, torch::kInt64);
  const torch::Tensor x_t = rng::normal({1, rng::Purpose::kSampling}, 0, idx, {4}).to(torch::kFloat64);
  const torch::Tensor eps = 0.3 * rng::normal({1, rng::Purpose::kSampling}, 1, idx, {4}).to(torch::kFloat64);
  const torch::Tensor z = rng::normal({1, rng::Purpose::kSampling}, 2, idx, {4}).to(torch::kFloat64);
  const int64_t t = 600, prev = 500;
  const double ab = s.step(t, prev).abar_t;
  const torch::Tensor x0 = (x_t - std::sqrt(1 - ab) * eps) / std::sqrt(ab);
  ASSERT_GT((x0.abs() > 1).sum().item<int64_t>(), 10);  // the clamp bites on many entries
  const torch::Tensor x0c = x0.clamp(-1, 1);
  const torch::Tensor eps_c = (x_t - std::sqrt(ab) * x0c) / std::sqrt(1 - ab);
  for (const double eta : {0.0, 0.5}) {
    EXPECT_TRUE(torch::allclose(ddim_step(s, x_t, eps, t, prev, eta, z, true),
                                ddim_step(s, x_t, eps_c, t, prev, eta, z, false), 1e-12, 1e-12));
  }
  EXPECT_TRUE(torch::allclose(ddpm_step(s, x_t, eps, t, prev, z, true), ddpm_step(s, x_t, eps_c, t, prev, z, false),
                              1e-12, 1e-12));
  // Inside [-1, 1] nothing changes; the last DDIM step (prev = -1) returns x0_c itself.
  const torch::Tensor inside = std::sqrt(ab) * 0.5 * torch::tanh(x_t) + std::sqrt(1 - ab) * eps;
  EXPECT_TRUE(torch::allclose(ddim_step(s, inside, eps, t, prev, 0.0, z, true),
                              ddim_step(s, inside, eps, t, prev, 0.0, z, false), 1e-12, 1e-12));
  const double ab0 = s.step(0, -1).abar_t;
  const torch::Tensor x0_last = (x_t - std::sqrt(1 - ab0) * eps) / std::sqrt(ab0);
  EXPECT_TRUE(torch::allclose(ddim_step(s, x_t, eps, 0, -1, 0.0, z, true), x0_last.clamp(-1, 1), 1e-12, 1e-12));
}

TEST(DdpmSampler, TimestepSpacings) {
  // Leading: 0, 100, ..., 900 (DDIM); trailing: 999, 899, ..., 99 (both in sampling order).
  EXPECT_EQ(timestep_subsequence(1000, 10, Spacing::kLeading),
            (std::vector<int64_t>{900, 800, 700, 600, 500, 400, 300, 200, 100, 0}));
  EXPECT_EQ(timestep_subsequence(1000, 10, Spacing::kTrailing),
            (std::vector<int64_t>{999, 899, 799, 699, 599, 499, 399, 299, 199, 99}));
  const auto all = timestep_subsequence(5, 5, Spacing::kTrailing);
  EXPECT_EQ(all, (std::vector<int64_t>{4, 3, 2, 1, 0}));
  EXPECT_EQ(timestep_subsequence(5, 5, Spacing::kLeading), all);
}

struct GaussianOracle {
  torch::Tensor mu;  // [D]
  double s;
  const DdpmSchedule* schedule;
  torch::Tensor operator()(const torch::Tensor& x, const torch::Tensor& t) const {
    const torch::Tensor abar = schedule->alpha_bar_at(t, x).to(torch::kFloat64);
    const torch::Tensor a = abar.sqrt(), sig = (1 - abar).sqrt();
    return (sig * (x.to(torch::kFloat64) - a * mu) / (abar * s * s + (1 - abar))).to(x.dtype());
  }
};

/// The exact law of a sampler's output when fed the oracle: every step is affine in x plus
/// independent Gaussian noise, x_prev = A x + B + sqrt(V) z, so per coordinate the mean and
/// variance follow m <- A m + B, v <- A^2 v + V from m = 0, v = 1. With a = sqrt(abar_t),
/// g = sqrt(1 - abar_t), D = abar_t s^2 + g^2, the oracle's x0_hat = (a s^2 / D) x + (g^2 / D) mu and
/// eps = (g / D) x - (g a / D) mu. Returns {mean offset per unit of mu, std}.
struct Law {
  double mean_per_mu;  // E[x_0] = mean_per_mu * mu
  double sd;
};

Law predicted_law(const DdpmSchedule& sch, double s, const std::vector<int64_t>& ts, bool ddim,
                  double eta) {
  double m = 0, v = 1;  // m in units of mu
  auto abar = [&](int64_t t) { return t < 0 ? 1.0 : sch.alpha_bars[t].item<double>(); };
  for (size_t i = 0; i < ts.size(); ++i) {
    const int64_t t = ts[i], prev = i + 1 < ts.size() ? ts[i + 1] : -1;
    const double at = abar(t), ap = abar(prev), a = std::sqrt(at), g = std::sqrt(1 - at);
    const double d = at * s * s + g * g;
    const double x0_x = a * s * s / d, x0_mu = g * g / d;  // x0_hat coefficients
    const double eps_x = g / d, eps_mu = -g * a / d;       // eps coefficients
    double A, B, V;
    if (!ddim) {
      const double beta = 1 - at / ap;
      const double c0 = std::sqrt(ap) * beta / (1 - at), ct = std::sqrt(1 - beta) * (1 - ap) / (1 - at);
      A = c0 * x0_x + ct;
      B = c0 * x0_mu;
      V = prev >= 0 ? (1 - ap) / (1 - at) * beta : 0.0;
    } else {
      const double sigma = eta * std::sqrt((1 - ap) / (1 - at)) * std::sqrt(1 - at / ap);
      const double ce = std::sqrt(1 - ap - sigma * sigma);
      A = std::sqrt(ap) * x0_x + ce * eps_x;
      B = std::sqrt(ap) * x0_mu + ce * eps_mu;
      V = prev >= 0 ? sigma * sigma : 0.0;
    }
    m = A * m + B;
    v = A * A * v + V;
  }
  return {m, std::sqrt(v)};
}

class GaussianSampling : public ::testing::Test {
 protected:
  static constexpr int64_t kN = 20000;
  static constexpr double kS = 0.5;
  DdpmSchedule schedule = DdpmSchedule::make(BetaSchedule::kLinear, 1000);
  GaussianOracle oracle{torch::tensor({1.0, -2.0}, torch::kFloat64), kS, &schedule};
  torch::Tensor idx = rng::arange_indices(0, kN);
  torch::Tensor x_T = rng::normal({1, rng::Purpose::kSampling}, 0, idx, {2}).to(torch::kFloat64);
  NoiseFn noise = [this](int64_t i) {
    return rng::normal({1, rng::Purpose::kSampling}, static_cast<uint64_t>(i + 1), idx, {2})
        .to(torch::kFloat64);
  };

  /// Sample mean and std against the law, within 4 standard errors.
  void expect_law(const torch::Tensor& x, const Law& law) {
    const torch::Tensor mean = x.mean(0), sd = x.std(0);
    const double se_mean = law.sd / std::sqrt(double(kN)), se_sd = law.sd / std::sqrt(2.0 * kN);
    EXPECT_LT((mean - law.mean_per_mu * oracle.mu).abs().max().item<double>(), 4 * se_mean) << mean;
    EXPECT_LT((sd - law.sd).abs().max().item<double>(), 4 * se_sd) << sd << " vs " << law.sd;
  }
};

TEST_F(GaussianSampling, AncestralOnAllStepsRecoversTheData) {
  const Law law = predicted_law(schedule, kS, timestep_subsequence(1000, 1000, Spacing::kLeading),
                                false, 0);
  // With all 1000 steps the output law is the data's, N(mu, 0.5^2), to 1% (beta_tilde variance
  // makes it 0.8% narrow).
  EXPECT_NEAR(law.mean_per_mu, 1.0, 5e-3);
  EXPECT_NEAR(law.sd, kS, 1e-2 * kS);
  expect_law(sample_ddpm(oracle, schedule, x_T, {}, noise), law);
}

TEST_F(GaussianSampling, AncestralOnASubsequenceFollowsItsExactLaw) {
  // 50 respaced steps: the beta_tilde variance loses spread (sd ~ 0.45 instead of 0.5); the
  // sampler must reproduce exactly that law.
  DdpmSamplerOptions o;
  o.steps = 50;
  const Law law = predicted_law(schedule, kS, timestep_subsequence(1000, 50, o.spacing), false, 0);
  expect_law(sample_ddpm(oracle, schedule, x_T, o, noise), law);
}

TEST_F(GaussianSampling, DeterministicDdimFollowsItsExactLaw) {
  DdpmSamplerOptions o;
  o.steps = 100;
  o.spacing = Spacing::kTrailing;
  const Law law = predicted_law(schedule, kS, timestep_subsequence(1000, 100, o.spacing), true, 0);
  EXPECT_NEAR(law.sd, kS, 0.05 * kS);  // the ODE with 100 steps is close to the data
  expect_law(sample_ddim(oracle, schedule, x_T, o, 0.0, noise), law);
}

TEST_F(GaussianSampling, StochasticDdimFollowsItsExactLaw) {
  DdpmSamplerOptions o;
  o.steps = 40;
  const Law law = predicted_law(schedule, kS, timestep_subsequence(1000, 40, o.spacing), true, 0.5);
  expect_law(sample_ddim(oracle, schedule, x_T, o, 0.5, noise), law);
}

TEST_F(GaussianSampling, DdimWithEtaOneIsTheAncestralSampler) {
  // sigma(eta = 1)^2 equals the respaced posterior variance, and the means agree: same noise,
  // same path.
  DdpmSamplerOptions o;
  o.steps = 25;
  const torch::Tensor a = sample_ddpm(oracle, schedule, x_T.slice(0, 0, 500), o, [&](int64_t i) {
    return noise(i).slice(0, 0, 500);
  });
  const torch::Tensor b = sample_ddim(oracle, schedule, x_T.slice(0, 0, 500), o, 1.0, [&](int64_t i) {
    return noise(i).slice(0, 0, 500);
  });
  EXPECT_TRUE(torch::allclose(a, b, 1e-9, 1e-9));
}

}  // namespace
}  // namespace unidiff::objectives
