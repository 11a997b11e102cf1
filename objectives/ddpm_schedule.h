// The DDPM discrete variance-preserving schedule (FORMULAS.md section 1; handbook 2.2).
//
// Conventions: code index t = 0..T-1 is the handbook's t = 1..T. `alphas` is the handbook's
// per-step alpha_t = 1 - beta_t; the unified-form coefficients are alpha_t = sqrt(abar_t) and
// sigma_t = sqrt(1 - abar_t), so x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps.
// Tables are float64 on the CPU; the per-batch gathers return float32 on the data's device.
#pragma once

#include <torch/types.h>

#include <string>
#include <vector>

namespace unidiff::objectives {

enum class BetaSchedule {
  kLinear,        ///< beta linear from beta_start to beta_end (Ho et al. 2020: 1e-4 -> 0.02)
  kCosine,        ///< Nichol & Dhariwal: abar = f(t) / f(0), f = cos^2(((t/T) + s)/(1 + s) pi/2)
  kScaledLinear,  ///< beta = linspace(sqrt(beta_start), sqrt(beta_end), T)^2 (Stable Diffusion)
};

std::string to_string(BetaSchedule s);
/// Parses "linear", "cosine", "scaled-linear"; anything else throws InputError listing them.
BetaSchedule parse_beta_schedule(const std::string& name);
const std::vector<std::string>& beta_schedule_names();

struct DdpmSchedule {
  BetaSchedule kind = BetaSchedule::kLinear;
  int64_t num_steps = 1000;  ///< T
  torch::Tensor betas;       ///< float64 [T]
  torch::Tensor alphas;      ///< float64 [T], 1 - beta
  torch::Tensor alpha_bars;  ///< float64 [T], cumulative product of alphas

  /// Builds the tables. Defaults give the linear schedule of Ho et al. (2020); scaled-linear
  /// usually takes beta_start = 0.00085, beta_end = 0.012.
  static DdpmSchedule make(BetaSchedule kind, int64_t num_steps, double beta_start = 1e-4,
                           double beta_end = 0.02);

  /// Per-step quantities between code index t and an earlier prev (prev = t - 1 on the full
  /// chain; any prev < t on a subsequence, respaced; prev = -1 means abar_prev = 1, i.e. x0).
  struct Step {
    double abar_t, abar_prev;
    double beta;        ///< respaced beta: 1 - abar_t / abar_prev
    double coef_x0;     ///< posterior mean coefficient of x0: sqrt(abar_prev) beta / (1 - abar_t)
    double coef_xt;     ///< of x_t: sqrt(1 - beta) (1 - abar_prev) / (1 - abar_t)
    double var;         ///< posterior variance beta_tilde = (1 - abar_prev) / (1 - abar_t) beta
  };
  Step step(int64_t t, int64_t prev) const;

  /// abar at code indices t (int64 [B]), as float32 [B, 1, ...] broadcastable to `like`. The
  /// gather runs where the tables are: tables moved to t's device (to()) need no host round trip.
  torch::Tensor alpha_bar_at(const torch::Tensor& t, const torch::Tensor& like) const;
  /// The same schedule with its tables on `device` (for the training step's gathers).
  DdpmSchedule to(torch::Device device) const;
};

/// Forward marginal (FORMULAS (6)): x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps.
/// x0, eps: [B, ...]; t: int64 [B] code indices.
torch::Tensor q_sample(const DdpmSchedule& schedule, const torch::Tensor& x0,
                       const torch::Tensor& t, const torch::Tensor& eps);

/// Tweedie (FORMULAS (7)): x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t).
torch::Tensor predict_x0_from_eps(const DdpmSchedule& schedule, const torch::Tensor& x_t,
                                  const torch::Tensor& t, const torch::Tensor& eps);

}  // namespace unidiff::objectives
