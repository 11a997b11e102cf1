// The sampler registry (objectives/sampling/registry.h) and the one DDIM (ddim.h): refusals name
// the valid samplers; a recorded trajectory is the sampling run itself (each state the step's
// Gaussian mean plus its std times that step's noise, the log-density that of the step taken, the
// last state the sampler's output); the DDPM trajectory's stds are the posterior stds of the
// tables; DDIM on progressive distillation's grid is the same DDIM as pd_sample, and the DDIM of
// the DDPM tables on integer steps the same as the unified one on those times.
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "core/rng.h"
#include "models/gmm.h"
#include "objectives/distill/progressive.h"
#include "objectives/parameterization.h"
#include "objectives/sampling/registry.h"
#include "test_util.h"

namespace unidiff::objectives {
namespace {

/// An exact model of 1-D Gaussian data N(0.5, 0.3^2) on the DDPM tables: eps and x0 in closed form.
struct GaussianModel {
  double mu = 0.5, s = 0.3;
  Schedule sch = Schedule::ddpm_schedule(BetaSchedule::kLinear, 1000);

  SamplerModel model() const {
    SamplerModel m;
    m.schedule = sch;
    m.kind = "the test model";
    const auto x0 = [*this](const torch::Tensor& x, const torch::Tensor& t) {
      const Coeffs c = sch.at(t.to(torch::kFloat64));
      const torch::Tensor a = c.alpha.view({-1, 1}), g = c.sigma.view({-1, 1});
      // E[x0 | x_t] for x0 ~ N(mu, s^2): mu + a s^2 (x - a mu) / (a^2 s^2 + g^2).
      return mu + a * s * s * (x - a * mu) / (a * a * s * s + g * g);
    };
    m.eps = [x0, *this](const torch::Tensor& x, const torch::Tensor& t) {
      const torch::Tensor tf = t.to(torch::kFloat64);
      return from_prediction(Prediction::kX0, x0(x, tf), x, tf, sch).eps;
    };
    m.denoise = [x0](const torch::Tensor& x, double t) {
      return x0(x, torch::full({x.size(0)}, t, torch::kFloat64));
    };
    return m;
  }
};

NoiseFn keyed_noise(int64_t n) {
  return [n](int64_t i) {
    return rng::normal({3, rng::Purpose::kSampling}, static_cast<uint64_t>(i + 1), rng::arange_indices(0, n), {1})
        .to(torch::kFloat64);
  };
}

TEST(SamplerRegistry, RefusalsNameTheValidChoices) {
  SamplerModel m = GaussianModel().model();
  m.samplers = {"ddpm", "ddim"};
  m.kind = "a DDPM model";
  EXPECT_EQ(select_sampler("", m).name, "ddpm");  // the model's default comes first
  EXPECT_EQ(testing::input_error_of([&] { select_sampler("euler", m); }), "unknown --sampler 'euler' for a DDPM model (valid: ddpm, ddim)");
  m.samplers.clear();  // an oracle: every sampler whose needs and schedules it meets
  EXPECT_EQ(testing::input_error_of([&] { select_sampler("smld", m); }),
            "sampler 'smld' takes schedules: ve (got 'ddpm-linear')");
  EXPECT_NE(testing::input_error_of([&] { select_sampler("cm-x", m); }).find("unknown --sampler 'cm-x' (valid: ddpm, ddim"),
            std::string::npos);
  EXPECT_NE(testing::input_error_of([&] { select_sampler("lcm", m); }).find("does not apply"), std::string::npos);
  EXPECT_NE(testing::input_error_of([&] {
              Trajectory tr;
              run_sampler(select_sampler("euler", m), m, torch::zeros({2, 1}, torch::kFloat64), {}, keyed_noise(2), &tr);
            }).find("does not record"),
            std::string::npos);
}

void check_trajectory(const Trajectory& tr, const torch::Tensor& out, const NoiseFn& noise, int64_t steps) {
  ASSERT_EQ(tr.x.size(), static_cast<size_t>(steps + 1));
  ASSERT_EQ(tr.mean.size(), static_cast<size_t>(steps));
  EXPECT_TRUE(torch::equal(tr.x.back(), out));
  for (int64_t i = 0; i < steps; ++i) {
    const auto k = static_cast<size_t>(i);
    if (tr.std[k] > 0) {
      EXPECT_TRUE(torch::allclose(tr.x[k + 1], tr.mean[k] + tr.std[k] * noise(i), 0, 1e-12)) << "step " << i;
      // The Gaussian log-density of the step taken, from its definition.
      const torch::Tensor z = (tr.x[k + 1] - tr.mean[k]) / tr.std[k];
      const torch::Tensor lp = -0.5 * z.pow(2).sum(1) - std::log(tr.std[k]) - 0.5 * std::log(2 * M_PI);
      EXPECT_TRUE(torch::allclose(tr.log_prob[k], lp, 1e-9, 1e-9)) << "step " << i;
    } else {
      EXPECT_TRUE(torch::equal(tr.x[k + 1], tr.mean[k])) << "step " << i;
      EXPECT_FALSE(tr.log_prob[k].defined());
    }
  }
}

TEST(SamplerRegistry, TrajectoriesRecordTheStepsTaken) {
  const GaussianModel g;
  const SamplerModel m = g.model();
  const int64_t n = 256, steps = 20;
  const NoiseFn noise = keyed_noise(n);
  const torch::Tensor x_T = rng::normal({3, rng::Purpose::kSampling}, 0, rng::arange_indices(0, n), {1})
                                .to(torch::kFloat64);
  SamplerOptions o;
  o.steps = steps;
  o.eta = 1.0;
  Trajectory tr;
  const torch::Tensor ddim = run_sampler(select_sampler("ddim", m), m, x_T, o, noise, &tr);
  check_trajectory(tr, ddim, noise, steps);
  EXPECT_TRUE(torch::equal(ddim, run_sampler(select_sampler("ddim", m), m, x_T, o, noise)));  // recording changes nothing
  EXPECT_GT(tr.std.front(), 0);
  EXPECT_EQ(tr.std.back(), 0);  // the last step goes to clean data
  const torch::Tensor ddpm = run_sampler(select_sampler("ddpm", m), m, x_T, o, noise, &tr);
  check_trajectory(tr, ddpm, noise, steps);
  // The ancestral step's std is the posterior std of the respaced chain: sqrt(beta_tilde).
  const std::vector<int64_t> ts = timestep_subsequence(1000, steps, Spacing::kLeading);
  for (int64_t i = 0; i + 1 < steps; ++i) {
    const auto k = static_cast<size_t>(i);
    EXPECT_DOUBLE_EQ(tr.std[k], std::sqrt(g.sch.ddpm.step(ts[k], ts[k + 1]).var));
  }
  // With all T steps both land on the data law N(0.5, 0.3^2): within sampling error of 256
  // samples (standard errors 0.019 and 0.013; bounds of about 3.5 of them).
  o.steps = 1000;
  for (const char* name : {"ddim", "ddpm"}) {
    const torch::Tensor x = run_sampler(select_sampler(name, m), m, x_T, o, noise);
    EXPECT_NEAR(x.mean().item<double>(), 0.5, 0.065) << name;
    EXPECT_NEAR(x.std().item<double>(), 0.3, 0.045) << name;
  }
}

TEST(SamplerRegistry, OneDeterministicDdim) {
  const GaussianModel g;
  const SamplerModel m = g.model();
  const int64_t n = 64;
  const torch::Tensor x_T = rng::normal({5, rng::Purpose::kSampling}, 0, rng::arange_indices(0, n), {1})
                                .to(torch::kFloat64);
  // Progressive distillation's N-step sampler is DDIM on the uniform grid (T-1) k / N.
  const X0Fn x0 = [&m](const torch::Tensor& z, const torch::Tensor& t) {
    return m.denoise(z, t[0].item<double>());
  };
  for (int64_t steps : {1, 2, 4, 8}) {
    SamplerOptions o;
    o.steps = steps;
    o.spacing = Spacing::kUniform;
    const torch::Tensor a = run_sampler(select_sampler("ddim", m), m, x_T, o, keyed_noise(n));
    const torch::Tensor b = pd_sample(x0, g.sch, x_T, steps);
    EXPECT_TRUE(torch::allclose(a, b, 1e-9, 1e-9)) << steps << " steps: " << (a - b).abs().max().item<double>();
  }
  // On integer steps the tables' DDIM and the unified one (the denoiser at those times) agree.
  SamplerOptions o;
  o.steps = 10;
  o.spacing = Spacing::kTrailing;
  const torch::Tensor tables = run_sampler(select_sampler("ddim", m), m, x_T, o, keyed_noise(n));
  std::vector<double> times;
  for (int64_t t : timestep_subsequence(1000, 10, Spacing::kTrailing)) times.push_back(static_cast<double>(t));
  const torch::Tensor unified = sample_ddim_times(m.denoise, g.sch, x_T, times, 0.0, false, keyed_noise(n));
  EXPECT_TRUE(torch::allclose(tables, unified, 1e-9, 1e-9)) << (tables - unified).abs().max().item<double>();
  // --spacing=uniform belongs to DDIM only.
  o.spacing = Spacing::kUniform;
  EXPECT_THROW(run_sampler(select_sampler("ddpm", m), m, x_T, o, keyed_noise(n)), InputError);
}

}  // namespace
}  // namespace unidiff::objectives
