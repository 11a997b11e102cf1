// Prediction parameterisations (FORMULAS.md section 2): what a network's raw output means, and
// the conversions between them. Every quantity goes through the pair (x0, eps) of the unified form
// x_t = alpha x0 + sigma eps:
//
//   eps          eps
//   x0           x0
//   v            alpha eps - sigma x0          stored Salimans & Ho convention, VP schedules only
//                                              (the handbook's v is its negative)
//   score        -eps / sigma                  grad log p(x_t)
//   velocity     alpha' x0 + sigma' eps        dx_t/dt in the schedule's own time
//   rf-velocity  eps - x0                      u of the RF trajectory through x_t (stored RF
//                                              convention: data to noise); = velocity for rf
//   instaflow    x0 - eps                      w, InstaFlow's noise-to-data velocity on x^RF
//   trigflow-F   cos t eps - sin t x0 / sigma_d   TrigFlow's F (its x_t = cos t x0 + sin t z,
//                                              z = sigma_d eps); the network input x_t / sigma_d
//                                              is the caller's business
#pragma once

#include <torch/types.h>

#include <string>
#include <vector>

#include "objectives/schedule.h"

namespace unidiff::objectives {

enum class Prediction { kEps, kX0, kV, kScore, kVelocity, kRfVelocity, kInstaflow, kTrigflowF };

std::string to_string(Prediction p);
/// "eps", "x0", "v", "score", "velocity", "rf-velocity", "instaflow", "trigflow-F".
Prediction parse_prediction(const std::string& name);
const std::vector<std::string>& prediction_names();

struct Denoised {
  torch::Tensor x0;   ///< [B, ...]
  torch::Tensor eps;  ///< [B, ...]
};

/// Interprets `out` (a prediction of kind p at x_t, times t [B] or scalar) as (x0, eps).
/// Throws InputError where the kind does not apply to the schedule (v on a non-VP schedule,
/// trigflow-F off TrigFlow).
Denoised from_prediction(Prediction p, const torch::Tensor& out, const torch::Tensor& x_t,
                         const torch::Tensor& t, const Schedule& schedule);
/// The prediction of kind p that (x0, eps) corresponds to at x_t, t.
torch::Tensor to_prediction(Prediction p, const Denoised& d, const torch::Tensor& x_t,
                            const torch::Tensor& t, const Schedule& schedule);
/// The eps, x0 or v prediction of (x0, eps) given VP coefficients alpha, sigma already shaped
/// against the data and on its device: to_prediction's formulas for those kinds, without a
/// schedule lookup (no host round trip in a training step). Other kinds are a programming error.
torch::Tensor vp_target(Prediction p, const Denoised& d, const torch::Tensor& alpha,
                        const torch::Tensor& sigma);

/// Converts a raw output between kinds.
torch::Tensor convert(Prediction from, Prediction to, const torch::Tensor& out,
                      const torch::Tensor& x_t, const torch::Tensor& t, const Schedule& schedule);

/// The VP-to-RF velocity mapping (FORMULAS (31), (39)): with v in the stored convention,
/// u^RF = (alpha + sigma) v - (alpha - sigma) x_t; x^RF = x_t / (alpha + sigma) at
/// s = sigma / (alpha + sigma).
torch::Tensor rf_velocity_from_v(const torch::Tensor& v, const torch::Tensor& x_t,
                                 const torch::Tensor& alpha, const torch::Tensor& sigma);

/// Consistency-model boundary coefficients f = c_skip x + c_out F(c_in x, c_noise).
struct Boundary {
  torch::Tensor c_skip, c_out, c_in, c_noise;
};
/// EDM / CM style (FORMULAS (19), (37)) at sigma = t: c_skip = sd^2 / ((t - eps_min)^2 + sd^2),
/// c_out = sd (t - eps_min) / sqrt(sd^2 + t^2), c_in = 1 / sqrt(t^2 + sd^2), c_noise = ln(t) / 4.
Boundary edm_boundary(const torch::Tensor& t, double sigma_d = 0.5, double eps_min = 0.002);
/// LCM (FORMULAS (24)) at the integer DDPM step t: c_skip = sd^2 / ((t / 0.1)^2 + sd^2),
/// c_out = (t / 0.1) / sqrt((t / 0.1)^2 + sd^2); c_in = 1 and c_noise = t (unused by LCM).
Boundary lcm_boundary(const torch::Tensor& t, double sigma_d = 0.5);

}  // namespace unidiff::objectives
