// Schedules and prediction conversions against tests/reference/math_reference.py (PyTorch,
// float64): every kind is produced from (x0, eps) and read back, on each schedule it applies to;
// the VP-to-RF velocity mapping, TrigFlow's identities, the CM/LCM boundary coefficients and the
// DDPO step log-density are checked too.
#include <gtest/gtest.h>

#include "test_util.h"
#include <torch/cuda.h>

#include <cstdlib>
#include <numbers>

#include "core/error.h"
#include "core/h5.h"
#include "objectives/sampling/ode.h"
#include "objectives/parameterization.h"
#include "objectives/reward/policy.h"
#include "objectives/schedule.h"

namespace unidiff::objectives {
namespace {

class MathReference : public ::testing::Test {
 protected:
  void SetUp() override {
    UD_REFERENCE_FILE(p, "UNIDIFF_MATH_REFERENCE");
    file_.emplace(h5::File::open_read(p));
  }
  torch::Tensor get(const std::string& name) { return h5::read_tensor(*file_, name); }
  bool has(const std::string& name) { return file_->has(name); }
  std::optional<h5::File> file_;
};

void expect_close(const torch::Tensor& a, const torch::Tensor& b, const std::string& what,
                  double tol = 1e-10) {
  ASSERT_EQ(a.sizes(), b.sizes()) << what;
  const double err = (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
  const double scale = std::max(1.0, b.abs().max().item<double>());
  EXPECT_LE(err, tol * scale) << what << ": max error " << err;
}

TEST_F(MathReference, ScheduleCoefficients) {
  for (const std::string name : {"ddpm-linear", "ve", "rf", "trigflow"}) {
    const Schedule s = Schedule::parse(name);
    const Coeffs c = s.at(get(name + "/t"));
    expect_close(c.alpha, get(name + "/alpha"), name + " alpha");
    expect_close(c.sigma, get(name + "/sigma"), name + " sigma");
    if (has(name + "/d_alpha")) {
      expect_close(c.d_alpha, get(name + "/d_alpha"), name + " d_alpha");
      expect_close(c.d_sigma, get(name + "/d_sigma"), name + " d_sigma");
    }
  }
}

TEST_F(MathReference, ScheduleCoefficientsOnTheGpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device here (checked on the GPU host)";
  const torch::Device cuda(torch::kCUDA, 0);
  for (const std::string name : {"ddpm-linear", "ve", "rf", "trigflow"}) {
    Schedule s = Schedule::parse(name);
    if (s.family == ScheduleFamily::kDdpm) s.ddpm = s.ddpm.to(cuda);  // its tables where t is
    const Coeffs c = s.at(get(name + "/t").to(cuda));  // computed there, nothing copied back
    ASSERT_EQ(c.alpha.device(), cuda) << name;
    ASSERT_EQ(c.d_sigma.device(), cuda) << name;
    expect_close(c.alpha.cpu(), get(name + "/alpha"), name + " alpha (cuda)");
    expect_close(c.sigma.cpu(), get(name + "/sigma"), name + " sigma (cuda)");
    if (has(name + "/d_alpha")) {
      expect_close(c.d_alpha.cpu(), get(name + "/d_alpha"), name + " d_alpha (cuda)");
      expect_close(c.d_sigma.cpu(), get(name + "/d_sigma"), name + " d_sigma (cuda)");
    }
  }
}

TEST_F(MathReference, EveryConversionInBothDirections) {
  int checked = 0;
  for (const std::string name : {"ddpm-linear", "ve", "rf", "trigflow"}) {
    const Schedule s = Schedule::parse(name);
    const torch::Tensor t = get(name + "/t"), x = get(name + "/x_t");
    const Denoised truth{get(name + "/x0"), get(name + "/eps")};
    for (const std::string& kind : prediction_names()) {
      if (!has(name + "/" + kind)) continue;  // kind does not apply (v off VP, F off TrigFlow)
      const Prediction p = parse_prediction(kind);
      const torch::Tensor ref = get(name + "/" + kind);
      // (x0, eps) -> prediction.
      expect_close(to_prediction(p, truth, x, t, s), ref, name + " to " + kind, 1e-9);
      // prediction -> (x0, eps).
      const Denoised back = from_prediction(p, ref, x, t, s);
      // DDPM at t = 999 has alpha = 0.0064: x0 from eps divides by it (error x 160).
      const double tol = name == "ddpm-linear" ? 1e-7 : 1e-9;
      expect_close(back.x0, truth.x0, name + " x0 from " + kind, tol);
      expect_close(back.eps, truth.eps, name + " eps from " + kind, tol);
      ++checked;
    }
  }
  // ddpm: 7 kinds (all but trigflow-F; velocity needs no reference there, see below);
  // ve, rf: 6 each; trigflow: 7.
  EXPECT_GE(checked, 24);
}

TEST_F(MathReference, DdpmVelocityIsTheDerivativeOfTheInterpolatedSchedule) {
  // On the DDPM family d_alpha, d_sigma come from log(abar) interpolated linearly; check them
  // against central finite differences of alpha(t), sigma(t) inside an interval.
  const Schedule s = Schedule::parse("ddpm-cosine");
  const torch::Tensor t = torch::tensor({10.5, 400.5, 900.5}, torch::kFloat64);
  const double h = 1e-4;
  const Coeffs c = s.at(t), up = s.at(t + h), down = s.at(t - h);
  expect_close(c.d_alpha, (up.alpha - down.alpha) / (2 * h), "d_alpha", 1e-6);
  expect_close(c.d_sigma, (up.sigma - down.sigma) / (2 * h), "d_sigma", 1e-6);
  // Integer t reproduces the discrete table exactly.
  EXPECT_DOUBLE_EQ(s.alpha(500.0), std::sqrt(s.ddpm.alpha_bars[500].item<double>()));
}

TEST_F(MathReference, VpToRfVelocityMapping) {
  // u^RF = (alpha + sigma) v - (alpha - sigma) x_t equals eps - x0 (FORMULAS (39)), and
  // x^RF = x_t / (alpha + sigma) lies on the RF path (1 - s) x0 + s eps, s = sigma / (alpha + sigma).
  const torch::Tensor a = get("ddpm-linear/alpha").unsqueeze(1), sg = get("ddpm-linear/sigma").unsqueeze(1);
  const torch::Tensor x = get("ddpm-linear/x_t"), x0 = get("ddpm-linear/x0"), eps = get("ddpm-linear/eps");
  expect_close(rf_velocity_from_v(get("ddpm-linear/v"), x, a, sg), eps - x0, "u^RF");
  const torch::Tensor srf = sg / (a + sg);
  expect_close(x / (a + sg), (1 - srf) * x0 + srf * eps, "x^RF");
}

TEST_F(MathReference, TrigflowIdentities) {
  const Schedule s = Schedule::parse("trigflow");
  const torch::Tensor t = get("trigflow/t").unsqueeze(1), x = get("trigflow/x_t");
  const torch::Tensor F = get("trigflow/trigflow-F"), x0 = get("trigflow/x0");
  const torch::Tensor z = s.sigma_d * get("trigflow/eps");
  // x0 = cos t x_t - sin t sd F; z = sin t x_t + cos t sd F; v_t = dx_t/dt = cos t z - sin t x0 = sd F.
  expect_close(torch::cos(t) * x - torch::sin(t) * s.sigma_d * F, x0, "x0");
  expect_close(torch::sin(t) * x + torch::cos(t) * s.sigma_d * F, z, "z");
  expect_close(get("trigflow/velocity"), s.sigma_d * F, "velocity = sd F");
  // The step to s = 0 is the denoiser; a step t -> s with the exact F of a point mass stays on
  // its trajectory x_s = cos s x0 + sin s z.
  const double t0 = get("trigflow/t")[2].item<double>(), s1 = 0.3;
  expect_close(trigflow_step(x[2], F[2], t0, 0.0, s.sigma_d), x0[2], "step to 0");
  expect_close(trigflow_step(x[2], F[2], t0, s1, s.sigma_d),
               std::cos(s1) * x0[2] + std::sin(s1) * z[2], "step to s");
}

TEST_F(MathReference, ConsistencyBoundaryCoefficients) {
  const Boundary e = edm_boundary(get("edm/t"));
  expect_close(e.c_skip, get("edm/c_skip"), "edm c_skip");
  expect_close(e.c_out, get("edm/c_out"), "edm c_out");
  expect_close(e.c_in, get("edm/c_in"), "edm c_in");
  expect_close(e.c_noise, get("edm/c_noise"), "edm c_noise");
  // The boundary condition f(x, eps_min) = x.
  EXPECT_DOUBLE_EQ(e.c_skip[0].item<double>(), 1.0);
  EXPECT_DOUBLE_EQ(e.c_out[0].item<double>(), 0.0);
  const Boundary l = lcm_boundary(get("lcm/t"));
  expect_close(l.c_skip, get("lcm/c_skip"), "lcm c_skip");
  expect_close(l.c_out, get("lcm/c_out"), "lcm c_out");
}

TEST_F(MathReference, StepLogProbMatchesNormalLogProb) {
  const double std = get("logprob/std").item<double>();
  expect_close(step_log_prob(get("logprob/x"), get("logprob/mean"), std), get("logprob/log_prob"),
               "log p", 1e-12);
  // DDPO's own (objectives/reward/policy.h: a std per sample) against the same Normal.log_prob.
  const torch::Tensor x = get("logprob/x");
  expect_close(gaussian_log_prob(x, get("logprob/mean"), torch::full({x.size(0)}, std, torch::kFloat64)),
               get("logprob/log_prob"), "policy log p", 1e-12);
}

TEST(Parameterization, RefusesKindsThatDoNotApply) {
  const torch::Tensor x = torch::randn({2, 3}, torch::kFloat64), t = torch::tensor({0.5, 0.6}, torch::kFloat64);
  EXPECT_THROW(to_prediction(Prediction::kV, {x, x}, x, t, Schedule::rf()), InputError);
  EXPECT_THROW(from_prediction(Prediction::kTrigflowF, x, x, t, Schedule::ve()), InputError);
  EXPECT_THROW(parse_prediction("epsilon"), InputError);
  EXPECT_THROW(Schedule::parse("edm"), InputError);
}

TEST(Parameterization, CfgConvention) {
  const torch::Tensor c = torch::tensor({1.0, 2.0}), u = torch::tensor({0.5, 0.0});
  EXPECT_TRUE(torch::allclose(cfg_combine(c, u, 1.0), c));  // w = 1: no guidance
  EXPECT_TRUE(torch::allclose(cfg_combine(c, u, 3.0), torch::tensor({2.0, 6.0})));
}

TEST(Schedule, DdpmTablesReplacedAfterUseAreNoticed) {
  // at() reads the tables the schedule holds when it is called (no stale copy of them anywhere):
  // a schedule given other tables afterwards uses them, and the schedule it was copied from its own.
  const torch::Tensor t = torch::tensor({0.0, 17.25, 500.5, 998.9}, torch::kFloat64);
  const Schedule linear = Schedule::ddpm_schedule(BetaSchedule::kLinear);
  const Schedule cosine = Schedule::ddpm_schedule(BetaSchedule::kCosine);
  Schedule s = linear;
  const Coeffs before = s.at(t);
  EXPECT_TRUE(torch::equal(before.alpha, linear.at(t).alpha));
  s.ddpm = cosine.ddpm;
  EXPECT_TRUE(torch::equal(s.at(t).alpha, cosine.at(t).alpha));
  EXPECT_TRUE(torch::equal(s.at(t).d_sigma, cosine.at(t).d_sigma));
  EXPECT_TRUE(torch::equal(linear.at(t).alpha, before.alpha));  // the copy it came from is unchanged
  EXPECT_FALSE(torch::equal(before.alpha, s.at(t).alpha));
}

TEST(Schedule, KarrasGridAndUniformGrids) {
  const auto ve = Schedule::ve().time_grid(4);
  EXPECT_DOUBLE_EQ(ve.front(), 80.0);
  EXPECT_NEAR(ve.back(), 0.002, 1e-15);
  // Karras: t_i^(1/7) evenly spaced.
  const double step = std::pow(80.0, 1 / 7.0) - std::pow(ve[1], 1 / 7.0);
  EXPECT_NEAR(std::pow(ve[1], 1 / 7.0) - std::pow(ve[2], 1 / 7.0), step, 1e-12);
  EXPECT_EQ(Schedule::rf().time_grid(4), (std::vector<double>{1.0, 0.75, 0.5, 0.25, 0.0}));
  EXPECT_DOUBLE_EQ(Schedule::trigflow().time_grid(2)[0], std::numbers::pi / 2);
}

}  // namespace
}  // namespace unidiff::objectives
