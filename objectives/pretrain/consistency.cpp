#include "objectives/pretrain/consistency.h"

#include <cmath>

#include "core/error.h"
#include "objectives/schedule.h"

namespace unidiff::objectives {

int64_t ict_intervals(int64_t step, int64_t total_steps, int64_t s0, int64_t s1) {
  UD_CHECK_INPUT(s0 >= 1 && s1 >= s0, "consistency curriculum needs 1 <= s0 <= s1, got s0 = ", s0,
                 ", s1 = ", s1);
  UD_CHECK_INPUT(total_steps >= 1, "total steps must be positive, got ", total_steps);
  int64_t doublings = 0;  // the fewest with s0 2^D >= s1
  while ((s0 << doublings) < s1) ++doublings;
  const int64_t stage = std::max<int64_t>(1, total_steps / (doublings + 1));
  const int64_t k = std::min<int64_t>(step / stage, doublings);
  return std::min(s0 << k, s1);
}

torch::Tensor karras_sigmas(int64_t intervals, double sigma_min, double sigma_max, double rho) {
  UD_CHECK_INPUT(intervals >= 1, "need at least one interval, got ", intervals);
  UD_CHECK_INPUT(sigma_min > 0 && sigma_max > sigma_min, "need 0 < sigma_min < sigma_max, got ",
                 sigma_min, ", ", sigma_max);
  const torch::Tensor f = torch::arange(intervals + 1, torch::kFloat64) / static_cast<double>(intervals);
  const double a = std::pow(sigma_min, 1 / rho), b = std::pow(sigma_max, 1 / rho);
  return (a + f * (b - a)).pow(rho);
}

torch::Tensor ict_interval_probs(const torch::Tensor& sigmas, double p_mean, double p_std) {
  UD_CHECK_INPUT(p_std > 0, "P_std must be positive, got ", p_std);
  const torch::Tensor cdf = torch::erf((sigmas.to(torch::kFloat64).log() - p_mean) / (std::sqrt(2.0) * p_std));
  torch::Tensor w = cdf.slice(0, 1) - cdf.slice(0, 0, -1);
  w = w.clamp_min(0);
  const double total = w.sum().item<double>();
  UD_CHECK_INPUT(total > 0, "the lognormal (P_mean ", p_mean, ", P_std ", p_std,
                 ") puts no mass on the noise levels");
  return w / total;
}

torch::Tensor sample_intervals(const torch::Tensor& probs, const torch::Tensor& u) {
  const torch::Tensor cdf = probs.to(u.device(), torch::kFloat64).cumsum(0);
  const torch::Tensor idx = torch::searchsorted(cdf, u.to(torch::kFloat64).contiguous(), false, /*right=*/true);
  return idx.clamp_max(probs.size(0) - 1);
}

torch::Tensor pseudo_huber(const torch::Tensor& a, const torch::Tensor& b, double c) {
  UD_ASSERT(a.sizes() == b.sizes(), "pseudo-Huber of ", a.sizes(), " and ", b.sizes());
  const torch::Tensor sq = (a - b).pow(2).reshape({a.size(0), -1}).sum(1);
  return (sq + c * c).sqrt() - c;
}

double ict_huber_c(int64_t elements) { return 0.00054 * std::sqrt(static_cast<double>(elements)); }

torch::Tensor trigflow_time(const torch::Tensor& tau, double sigma_d) {
  return torch::atan(tau.exp() / sigma_d);
}

torch::Tensor scm_target_direction(const torch::Tensor& x_t, const torch::Tensor& t,
                                   const torch::Tensor& F, const torch::Tensor& dF_dt,
                                   const torch::Tensor& dx_dt, double sigma_d, const torch::Tensor& warmup_r,
                                   double c_norm) {
  const torch::Tensor cos = per_sample(torch::cos(t), x_t), sin = per_sample(torch::sin(t), x_t);
  torch::Tensor g = -cos * cos * (sigma_d * F - dx_dt) - warmup_r * cos * sin * (x_t + sigma_d * dF_dt);
  const torch::Tensor norm = g.reshape({g.size(0), -1}).norm(2, 1);
  return g / per_sample(norm + c_norm, g);
}

}  // namespace unidiff::objectives
