// Progressive and guided distillation's losses against their definitions (objectives/distill/
// progressive.h, FORMULAS.md section 5): with linear stand-ins for the conditional and the
// unconditional model (x0_c(z, t) = a_c z + b_c, x0_u(z, t) = a_u z + b_u), the guided round target
// is the x0 that makes one student DDIM step land where two DDIM steps of the guided teacher
// uncond + w (cond - uncond) land (computed here step by step from the DDPM tables), and the first
// stage's target is the guided teacher's x0 at the same point, its loss zero for the guided
// teacher itself and the SNR-weighted squared offset for a student off by a constant.
#include <gtest/gtest.h>

#include <cmath>

#include "objectives/distill/progressive.h"
#include "objectives/schedule.h"

namespace unidiff::objectives {
namespace {

struct Linear {
  double a, b;
  X0Fn fn() const {
    return [a = a, b = b](const torch::Tensor& z, const torch::Tensor&) { return a * z + b; };
  }
};

TEST(GuidedDistillation, TheRoundTargetIsTwoGuidedDdimSteps) {
  const Schedule sch = Schedule::ddpm_schedule(BetaSchedule::kLinear, 1000);
  const Linear cond{0.6, 0.2}, uncond{0.3, -0.1};
  const torch::Tensor w = torch::tensor({1.0, 2.5, 4.0}, torch::kFloat64);
  const X0Fn teacher = guided_x0(cond.fn(), uncond.fn(), w);
  const torch::Tensor x0 = torch::tensor({{0.5, -0.4}, {1.0, 0.3}, {-0.7, 0.9}}, torch::kFloat64);
  const torch::Tensor eps = torch::tensor({{0.3, 1.1}, {-0.8, 0.2}, {0.5, -1.5}}, torch::kFloat64);
  const int64_t n = 4;
  const torch::Tensor s = torch::tensor({1.0, 0.5, 0.25}, torch::kFloat64);
  const PdLoss out = progressive_distillation_loss(teacher, teacher, sch, x0, eps, s, n);
  for (int64_t i = 0; i < 3; ++i) {
    // By hand: z at s, two DDIM steps of the guided x0 to s - 1/(2n) and s - 1/n, then x_tilde.
    const double si = s[i].item<double>(), wi = w[i].item<double>();
    const auto coeff = [&](double p) {
      if (p <= 0) return std::pair<double, double>{1.0, 0.0};
      const double t = p * 999.0;
      return std::pair<double, double>{sch.alpha(t), sch.sigma(t)};
    };
    const auto [a0, g0] = coeff(si);
    const auto [a1, g1] = coeff(si - 0.5 / n);
    const auto [a2, g2] = coeff(si - 1.0 / n);
    const auto guided = [&](const torch::Tensor& z) {
      const torch::Tensor u = uncond.a * z + uncond.b;
      return u + wi * (cond.a * z + cond.b - u);
    };
    const torch::Tensor z0 = a0 * x0[i] + g0 * eps[i];
    const torch::Tensor h0 = guided(z0);
    const torch::Tensor z1 = a1 * h0 + g1 * (z0 - a0 * h0) / g0;
    const torch::Tensor h1 = guided(z1);
    const torch::Tensor z2 = a2 * h1 + (g2 > 0 ? g2 * (z1 - a1 * h1) / g1 : torch::zeros_like(z1));
    const double r = g2 / g0;
    const torch::Tensor want = (z2 - r * z0) / (a2 - r * a0);
    EXPECT_TRUE(torch::allclose(out.x_target[i], want, 1e-9, 1e-10))
        << "sample " << i << ": " << out.x_target[i] << " vs " << want;
  }
}

TEST(GuidedDistillation, TheFirstStageMatchesTheGuidedTeachersX0) {
  const Schedule sch = Schedule::ddpm_schedule(BetaSchedule::kLinear, 1000);
  const Linear cond{0.6, 0.2}, uncond{0.3, -0.1};
  const torch::Tensor w = torch::tensor({1.5, 3.0}, torch::kFloat64);
  const X0Fn teacher = guided_x0(cond.fn(), uncond.fn(), w);
  const torch::Tensor x0 = torch::tensor({{0.5, -0.4}, {1.0, 0.3}}, torch::kFloat64);
  const torch::Tensor eps = torch::tensor({{0.3, 1.1}, {-0.8, 0.2}}, torch::kFloat64);
  const torch::Tensor s = torch::tensor({0.1, 0.9}, torch::kFloat64);
  const PdLoss same = guidance_distillation_loss(teacher, teacher, sch, x0, eps, s);
  EXPECT_EQ(same.loss.item<double>(), 0.0);
  const double delta = 0.05;
  const X0Fn off = [&](const torch::Tensor& z, const torch::Tensor& t) { return teacher(z, t) + delta; };
  const PdLoss out = guidance_distillation_loss(teacher, off, sch, x0, eps, s);
  double want = 0;
  for (int64_t i = 0; i < 2; ++i) {
    const double t = s[i].item<double>() * 999.0, a = sch.alpha(t), g = sch.sigma(t);
    const torch::Tensor z = a * x0[i] + g * eps[i];
    const torch::Tensor u = uncond.a * z + uncond.b;
    const torch::Tensor target = u + w[i].item<double>() * (cond.a * z + cond.b - u);
    EXPECT_TRUE(torch::allclose(out.x_target[i], target, 1e-12, 1e-12));
    want += std::max(a * a / (g * g), 1.0) * delta * delta / 2.0;  // 2 samples x 2 elements: mean = sum / 4
  }
  EXPECT_NEAR(out.loss.item<double>(), want, 1e-12);
}

}  // namespace
}  // namespace unidiff::objectives
