#include "objectives/schedule.h"

#include <cmath>
#include <numbers>

#include "core/error.h"

namespace unidiff::objectives {

torch::Tensor per_sample(const torch::Tensor& v, const torch::Tensor& x) {
  std::vector<int64_t> shape(static_cast<size_t>(x.dim()), 1);
  shape[0] = x.size(0);
  return v.to(x.device(), x.scalar_type()).view(shape);
}

Schedule Schedule::ddpm_schedule(BetaSchedule kind, int64_t num_steps) {
  const bool scaled = kind == BetaSchedule::kScaledLinear;
  return from_ddpm(DdpmSchedule::make(kind, num_steps, scaled ? 0.00085 : 1e-4, scaled ? 0.012 : 0.02));
}

Schedule Schedule::from_ddpm(const DdpmSchedule& tables) {
  Schedule s;
  s.family = ScheduleFamily::kDdpm;
  s.name = "ddpm-" + to_string(tables.kind);
  s.ddpm = tables;
  s.t_min = 0;
  s.t_max = static_cast<double>(tables.num_steps - 1);
  return s;
}

Schedule Schedule::ve(double sigma_min, double sigma_max) {
  Schedule s;
  s.family = ScheduleFamily::kVe;
  s.name = "ve";
  s.t_min = sigma_min;
  s.t_max = sigma_max;
  return s;
}

Schedule Schedule::rf() {
  Schedule s;
  s.family = ScheduleFamily::kRf;
  s.name = "rf";
  s.t_min = 0;
  s.t_max = 1;
  return s;
}

Schedule Schedule::trigflow(double sigma_d) {
  Schedule s;
  s.family = ScheduleFamily::kTrigflow;
  s.name = "trigflow";
  s.sigma_d = sigma_d;
  s.t_min = 0;
  s.t_max = std::numbers::pi / 2;
  return s;
}

const std::vector<std::string>& Schedule::names() {
  static const std::vector<std::string> n = {"ddpm-linear", "ddpm-cosine", "ddpm-scaled-linear",
                                             "ve", "rf", "trigflow"};
  return n;
}

Schedule Schedule::parse(const std::string& name) {
  if (name == "ddpm-linear") return ddpm_schedule(BetaSchedule::kLinear);
  if (name == "ddpm-cosine") return ddpm_schedule(BetaSchedule::kCosine);
  if (name == "ddpm-scaled-linear") return ddpm_schedule(BetaSchedule::kScaledLinear);
  if (name == "ve") return ve();
  if (name == "rf") return rf();
  if (name == "trigflow") return trigflow();
  UD_FAIL_INPUT("unknown schedule '", name,
                "' (valid: ddpm-linear, ddpm-cosine, ddpm-scaled-linear, ve, rf, trigflow)");
}

Coeffs Schedule::at(const torch::Tensor& t_in) const {
  const torch::Tensor t = t_in.to(torch::kFloat64);  // on its own device
  Coeffs c;
  switch (family) {
    case ScheduleFamily::kDdpm: {
      const torch::Tensor la = torch::log(ddpm.alpha_bars.to(t.device(), torch::kFloat64));
      const int64_t n = ddpm.num_steps;
      const torch::Tensor tc = t.clamp(0, static_cast<double>(n - 1));
      const torch::Tensor lo = tc.floor().clamp_max(static_cast<double>(n - 2)).to(torch::kInt64);
      const torch::Tensor frac = tc - lo.to(torch::kFloat64);
      const torch::Tensor la_lo = la.index_select(0, lo.flatten()).view(t.sizes());
      const torch::Tensor la_hi = la.index_select(0, (lo + 1).flatten()).view(t.sizes());
      const torch::Tensor l = la_lo + frac * (la_hi - la_lo), dl = la_hi - la_lo;
      const torch::Tensor abar = torch::exp(l);
      c.alpha = abar.sqrt();
      c.sigma = (1 - abar).sqrt();
      c.d_alpha = c.alpha * dl / 2;
      c.d_sigma = -abar * dl / (2 * c.sigma);
      break;
    }
    case ScheduleFamily::kVe:
      c.alpha = torch::ones_like(t);
      c.sigma = t.clone();
      c.d_alpha = torch::zeros_like(t);
      c.d_sigma = torch::ones_like(t);
      break;
    case ScheduleFamily::kRf:
      c.alpha = 1 - t;
      c.sigma = t.clone();
      c.d_alpha = -torch::ones_like(t);
      c.d_sigma = torch::ones_like(t);
      break;
    case ScheduleFamily::kTrigflow:
      c.alpha = torch::cos(t);
      c.sigma = sigma_d * torch::sin(t);
      c.d_alpha = -torch::sin(t);
      c.d_sigma = sigma_d * torch::cos(t);
      break;
  }
  return c;
}

double Schedule::alpha(double t) const {
  return at(torch::tensor({t}, torch::kFloat64)).alpha.item<double>();
}

double Schedule::sigma(double t) const {
  return at(torch::tensor({t}, torch::kFloat64)).sigma.item<double>();
}

bool Schedule::is_variance_preserving() const {
  return family == ScheduleFamily::kDdpm || (family == ScheduleFamily::kTrigflow && sigma_d == 1.0);
}

std::vector<double> Schedule::time_grid(int64_t steps) const {
  UD_CHECK_INPUT(steps >= 1, "the number of steps must be at least 1, got ", steps);
  std::vector<double> ts(static_cast<size_t>(steps + 1));
  for (int64_t i = 0; i <= steps; ++i) {
    const double f = static_cast<double>(i) / static_cast<double>(steps);
    if (family == ScheduleFamily::kVe) {
      // Karras et al. (2022) eq. 5, from sigma_max down to sigma_min.
      const double a = std::pow(t_max, 1 / rho), b = std::pow(t_min, 1 / rho);
      ts[static_cast<size_t>(i)] = std::pow(a + f * (b - a), rho);
    } else {
      ts[static_cast<size_t>(i)] = t_max + f * (t_min - t_max);
    }
  }
  return ts;
}

}  // namespace unidiff::objectives
