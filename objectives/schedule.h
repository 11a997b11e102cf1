// One interface over the handbook's noise schedules (FORMULAS.md section 1), in the unified form
// x_t = alpha_t x0 + sigma_t eps with eps ~ N(0, I):
//
//   family     alpha_t        sigma_t              t domain              model input
//   ddpm-*     sqrt(abar_t)   sqrt(1 - abar_t)     [0, T-1] (code idx)   t (the integer step)
//   ve         1              t                    [0.002, 80]           t
//   rf         1 - t          t                    [0, 1]                t
//   trigflow   cos t          sigma_d sin t        [0, pi/2]             t
//
// TrigFlow's noise is z = sigma_d eps ~ N(0, sigma_d^2 I), so its sigma_t carries sigma_d. DDPM is
// extended to real t by interpolating log(abar) linearly between integer steps (its derivatives are
// those of that interpolation); integer t gives the discrete schedule exactly.
#pragma once

#include <torch/types.h>

#include <string>
#include <vector>

#include "objectives/ddpm_schedule.h"

namespace unidiff::objectives {

enum class ScheduleFamily { kDdpm, kVe, kRf, kTrigflow };

/// A per-sample [B] tensor (a coefficient, a time) as x's dtype on x's device, shaped [B, 1, ...] to
/// broadcast against x [B, ...].
torch::Tensor per_sample(const torch::Tensor& v, const torch::Tensor& x);

/// alpha_t, sigma_t and their time derivatives, float64, shaped like the t they were taken at.
struct Coeffs {
  torch::Tensor alpha, sigma, d_alpha, d_sigma;
};

struct Schedule {
  ScheduleFamily family = ScheduleFamily::kDdpm;
  std::string name;          ///< e.g. "ddpm-linear", "ve"
  DdpmSchedule ddpm;         ///< the tables, for the ddpm family
  double t_min = 0;          ///< end of sampling (data side)
  double t_max = 1;          ///< start of sampling (noise side)
  double sigma_d = 0.5;      ///< data std of EDM/CM/TrigFlow parameterisations (TrigFlow noise std)
  double rho = 7;            ///< Karras step exponent (ve)

  static Schedule ddpm_schedule(BetaSchedule kind, int64_t num_steps = 1000);
  /// The ddpm family over given tables (custom beta_start / beta_end included).
  static Schedule from_ddpm(const DdpmSchedule& tables);
  static Schedule ve(double sigma_min = 0.002, double sigma_max = 80);
  static Schedule rf();
  static Schedule trigflow(double sigma_d = 0.5);
  /// "ddpm-linear", "ddpm-cosine", "ddpm-scaled-linear", "ve", "rf", "trigflow"; anything else
  /// throws InputError listing them.
  static Schedule parse(const std::string& name);
  static const std::vector<std::string>& names();

  /// Coefficients at times t (any shape), in float64 on t's device. The DDPM tables are read
  /// where t is: tables moved there beforehand (`ddpm = ddpm.to(device)`) need no copy, so
  /// nothing waits for the host; tables elsewhere are copied over on each call.
  Coeffs at(const torch::Tensor& t) const;
  /// Scalar versions.
  double alpha(double t) const;
  double sigma(double t) const;
  /// Whether alpha^2 + sigma^2 = 1 (variance preserving): the v-prediction needs it.
  bool is_variance_preserving() const;

  /// `steps` + 1 decreasing times from t_max to t_min: Karras steps (rho) for ve, uniform in t
  /// otherwise.
  std::vector<double> time_grid(int64_t steps) const;
};

}  // namespace unidiff::objectives
