// The DDPM schedules against float64 values from tests/reference/ddpm_reference.py (PyTorch), and
// the forward-marginal / Tweedie pair in both directions.
#include <gtest/gtest.h>

#include "test_util.h"

#include <cstdlib>

#include "core/h5.h"
#include "objectives/ddpm_schedule.h"

namespace unidiff::objectives {
namespace {

TEST(DdpmSchedule, MatchesThePyTorchReference) {
  UD_REFERENCE_FILE(ref, "UNIDIFF_DDPM_REFERENCE");
  const h5::File f = h5::File::open_read(ref);
  const std::vector<std::tuple<std::string, BetaSchedule, double, double>> cases = {
      {"linear", BetaSchedule::kLinear, 1e-4, 0.02},
      {"cosine", BetaSchedule::kCosine, 1e-4, 0.02},
      {"scaled-linear", BetaSchedule::kScaledLinear, 0.00085, 0.012}};
  for (const auto& [name, kind, b0, b1] : cases) {
    const DdpmSchedule s = DdpmSchedule::make(kind, 1000, b0, b1);
    EXPECT_TRUE(torch::allclose(s.betas, h5::read_tensor(f, name + "/betas"), 1e-12, 1e-15)) << name;
    EXPECT_TRUE(torch::allclose(s.alpha_bars, h5::read_tensor(f, name + "/alpha_bars"), 1e-12,
                                1e-15))
        << name;
  }
}

TEST(DdpmSchedule, LinearEndpointsAndCumulativeProduct) {
  const DdpmSchedule s = DdpmSchedule::make(BetaSchedule::kLinear, 1000);
  EXPECT_DOUBLE_EQ(s.betas[0].item<double>(), 1e-4);
  EXPECT_DOUBLE_EQ(s.betas[999].item<double>(), 0.02);
  // abar_1 = 1 - beta_1; abar_2 = (1 - beta_1)(1 - beta_2).
  EXPECT_DOUBLE_EQ(s.alpha_bars[0].item<double>(), 1 - 1e-4);
  EXPECT_NEAR(s.alpha_bars[1].item<double>(),
              (1 - 1e-4) * (1 - (1e-4 + (0.02 - 1e-4) / 999)), 1e-15);
  // abar_T = prod_{i<1000} (1 - beta_i), beta_i = 1e-4 + i (0.02 - 1e-4) / 999, multiplied out
  // here in long double (about 4.04e-5).
  long double prod = 1;
  for (int i = 0; i < 1000; ++i) prod *= 1 - (1e-4L + i * (0.02L - 1e-4L) / 999);
  EXPECT_NEAR(s.alpha_bars[999].item<double>(), static_cast<double>(prod), 1e-15);
}

TEST(DdpmSchedule, ForwardMarginalAndTweedieInvertEachOther) {
  const DdpmSchedule s = DdpmSchedule::make(BetaSchedule::kCosine, 1000);
  const torch::Tensor x0 = torch::randn({6, 4}, torch::kFloat64).to(torch::kFloat32);
  const torch::Tensor eps = torch::randn({6, 4});
  const torch::Tensor t = torch::tensor({0, 10, 200, 500, 900, 990}, torch::kInt64);
  const torch::Tensor x_t = q_sample(s, x0, t, eps);
  // By hand for one row: x_t = sqrt(abar) x0 + sqrt(1 - abar) eps.
  const double abar = s.alpha_bars[500].item<double>();
  EXPECT_TRUE(torch::allclose(x_t[3], std::sqrt(abar) * x0[3] + std::sqrt(1 - abar) * eps[3], 1e-5,
                              1e-6));
  // Up to t = 900 the round trip loses little; at 990 (abar ~ 1e-4) float32 amplifies error.
  EXPECT_TRUE(torch::allclose(predict_x0_from_eps(s, x_t, t, eps).slice(0, 0, 5), x0.slice(0, 0, 5),
                              1e-4, 1e-4));
}

TEST(DdpmSchedule, PosteriorCoefficientsOnTheFullChain) {
  // prev = t - 1: beta is the schedule's beta_t and the coefficients are those of (8).
  const DdpmSchedule s = DdpmSchedule::make(BetaSchedule::kLinear, 1000);
  const auto st = s.step(300, 299);
  const double b = s.betas[300].item<double>(), a = s.alpha_bars[300].item<double>(),
               ap = s.alpha_bars[299].item<double>();
  EXPECT_NEAR(st.beta, b, 1e-12);
  EXPECT_NEAR(st.coef_x0, std::sqrt(ap) * b / (1 - a), 1e-12);
  EXPECT_NEAR(st.coef_xt, std::sqrt(1 - b) * (1 - ap) / (1 - a), 1e-12);
  EXPECT_NEAR(st.var, (1 - ap) / (1 - a) * b, 1e-15);
  // To x0 (prev = -1): the mean is x0 itself and there is no noise.
  const auto last = s.step(0, -1);
  EXPECT_NEAR(last.coef_x0, 1.0, 1e-12);
  EXPECT_NEAR(last.coef_xt, 0.0, 1e-12);
  EXPECT_EQ(last.var, 0.0);
}

TEST(DdpmSchedule, RejectsBadParameters) {
  EXPECT_ANY_THROW(DdpmSchedule::make(BetaSchedule::kLinear, 1));
  EXPECT_ANY_THROW(DdpmSchedule::make(BetaSchedule::kLinear, 10, 0.1, 0.01));
  EXPECT_ANY_THROW(parse_beta_schedule("sigmoid"));
  EXPECT_EQ(parse_beta_schedule("scaled-linear"), BetaSchedule::kScaledLinear);
}

}  // namespace
}  // namespace unidiff::objectives
