#include "objectives/ddpm_schedule.h"

#include <cmath>
#include <numbers>

#include "core/error.h"

namespace unidiff::objectives {

std::string to_string(BetaSchedule s) {
  switch (s) {
    case BetaSchedule::kLinear: return "linear";
    case BetaSchedule::kCosine: return "cosine";
    case BetaSchedule::kScaledLinear: return "scaled-linear";
  }
  return "?";
}

const std::vector<std::string>& beta_schedule_names() {
  static const std::vector<std::string> names = {"linear", "cosine", "scaled-linear"};
  return names;
}

BetaSchedule parse_beta_schedule(const std::string& name) {
  for (BetaSchedule s : {BetaSchedule::kLinear, BetaSchedule::kCosine, BetaSchedule::kScaledLinear}) {
    if (to_string(s) == name) return s;
  }
  UD_FAIL_INPUT("unknown beta schedule '", name, "' (valid: linear, cosine, scaled-linear)");
}

DdpmSchedule DdpmSchedule::make(BetaSchedule kind, int64_t num_steps, double beta_start,
                                double beta_end) {
  UD_CHECK_INPUT(num_steps >= 2, "the number of diffusion steps T must be at least 2, got ",
                 num_steps);
  UD_CHECK_INPUT(beta_start > 0 && beta_end < 1 && beta_start <= beta_end,
                 "need 0 < beta_start <= beta_end < 1, got ", beta_start, " and ", beta_end);
  DdpmSchedule s;
  s.kind = kind;
  s.num_steps = num_steps;
  const auto f64 = torch::kFloat64;
  switch (kind) {
    case BetaSchedule::kLinear:
      s.betas = torch::linspace(beta_start, beta_end, num_steps, f64);
      break;
    case BetaSchedule::kScaledLinear:
      s.betas = torch::linspace(std::sqrt(beta_start), std::sqrt(beta_end), num_steps, f64).pow(2);
      break;
    case BetaSchedule::kCosine: {
      // abar(t) = f(t) / f(0) on t = 0..T; beta_t = 1 - abar(t) / abar(t - 1), clipped at 0.999.
      constexpr double kS = 0.008;
      const torch::Tensor steps = torch::arange(num_steps + 1, f64) / static_cast<double>(num_steps);
      const torch::Tensor f = torch::cos((steps + kS) / (1 + kS) * (std::numbers::pi / 2)).pow(2);
      const torch::Tensor abar = f / f[0];
      s.betas = (1 - abar.slice(0, 1) / abar.slice(0, 0, num_steps)).clamp_max(0.999);
      break;
    }
  }
  s.alphas = 1 - s.betas;
  s.alpha_bars = torch::cumprod(s.alphas, 0);
  // x0 = (x_t - sigma eps) / sqrt(abar): an alpha-bar that underflows (a linear schedule over
  // 10^5 steps reaches e^-1000) makes every sampler divide by zero and return NaN.
  const double last = s.alpha_bars[num_steps - 1].item<double>();
  UD_CHECK_INPUT(last >= 1e-30, "the ", to_string(kind), " schedule over T = ", num_steps, " steps (betas ", beta_start,
                 " to ", beta_end, ") drives alpha-bar to ", last,
                 " at the last step, where sampling divides by its square root; use fewer steps or smaller betas");
  return s;
}

DdpmSchedule::Step DdpmSchedule::step(int64_t t, int64_t prev) const {
  UD_ASSERT(t >= 0 && t < num_steps && prev < t && prev >= -1, "step from ", t, " to ", prev);
  Step s;
  s.abar_t = alpha_bars[t].item<double>();
  s.abar_prev = prev < 0 ? 1.0 : alpha_bars[prev].item<double>();
  s.beta = 1 - s.abar_t / s.abar_prev;
  s.coef_x0 = std::sqrt(s.abar_prev) * s.beta / (1 - s.abar_t);
  s.coef_xt = std::sqrt(1 - s.beta) * (1 - s.abar_prev) / (1 - s.abar_t);
  s.var = (1 - s.abar_prev) / (1 - s.abar_t) * s.beta;
  return s;
}

torch::Tensor DdpmSchedule::alpha_bar_at(const torch::Tensor& t, const torch::Tensor& like) const {
  std::vector<int64_t> shape(static_cast<size_t>(like.dim()), 1);
  shape[0] = t.size(0);
  return alpha_bars.index_select(0, t.to(alpha_bars.device(), torch::kInt64))
      .to(like.device(), torch::kFloat32)
      .view(shape);
}

DdpmSchedule DdpmSchedule::to(torch::Device device) const {
  DdpmSchedule s = *this;
  s.betas = betas.to(device);
  s.alphas = alphas.to(device);
  s.alpha_bars = alpha_bars.to(device);
  return s;
}

torch::Tensor q_sample(const DdpmSchedule& schedule, const torch::Tensor& x0,
                       const torch::Tensor& t, const torch::Tensor& eps) {
  const torch::Tensor abar = schedule.alpha_bar_at(t, x0);
  return abar.sqrt() * x0 + (1 - abar).sqrt() * eps;
}

torch::Tensor predict_x0_from_eps(const DdpmSchedule& schedule, const torch::Tensor& x_t,
                                  const torch::Tensor& t, const torch::Tensor& eps) {
  const torch::Tensor abar = schedule.alpha_bar_at(t, x_t);
  return (x_t - (1 - abar).sqrt() * eps) / abar.sqrt();
}

}  // namespace unidiff::objectives
