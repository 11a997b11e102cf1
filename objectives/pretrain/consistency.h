// Consistency training (iCT), the TrigFlow diffusion loss and continuous-time consistency (sCM):
// the pieces of FORMULAS.md section 3 that are pure functions of tensors (handbook 3.1.2, 3.1.4,
// 2.5.1). The training loops that draw the keyed randomness and call the network are in
// experiments/objective.cpp.
//
// Conventions. iCT works on the VE / EDM schedule with sigma = t in [sigma_min, sigma_max] and
// the boundary parameterisation of parameterization.h (edm_boundary, eps_min = sigma_min).
// TrigFlow: x_t = cos t x0 + sin t z with z = sigma_d eps, t in [0, pi/2]; the network F takes
// x_t / sigma_d, and x0_hat = cos t x_t - sin t sigma_d F (FORMULAS (38)).
#pragma once

#include <torch/types.h>

#include <cstdint>

namespace unidiff::objectives {

/// iCT curriculum: the number of discretisation intervals N(k) at training step k of K,
/// N(k) = min(s0 * 2^min(floor(k / K'), D), s1) with D = ceil(log2(s1 / s0)) doublings and
/// K' = floor(K / (D + 1)) steps a stage; the Karras grid then has N(k) + 1 points. iCT writes
/// D = floor(log2 floor(s1 / s0)), the same when s1 / s0 is a power of two; otherwise its last
/// stage stops short of s1 (s0 = 10, s1 = 1000: 640), this one ends at s1.
int64_t ict_intervals(int64_t step, int64_t total_steps, int64_t s0 = 10, int64_t s1 = 1280);

/// The Karras grid sigma_0 < ... < sigma_n (n + 1 points, ascending, float64), Karras et al.
/// (2022) eq. 5 with rho.
torch::Tensor karras_sigmas(int64_t intervals, double sigma_min, double sigma_max, double rho = 7);

/// iCT's lognormal interval weights: p(i) proportional to
/// erf((ln sigma_{i+1} - P_mean) / (sqrt 2 P_std)) - erf((ln sigma_i - P_mean) / (sqrt 2 P_std)),
/// i = 0..n-1, normalised (float64 [n]).
torch::Tensor ict_interval_probs(const torch::Tensor& sigmas, double p_mean, double p_std);

/// Inverse-CDF draw of interval indices from probs [n] with uniforms u in [0, 1) (any shape):
/// the smallest i with u < cumsum(probs)[i] (int64, shaped like u, on u's device).
torch::Tensor sample_intervals(const torch::Tensor& probs, const torch::Tensor& u);

/// Pseudo-Huber distance per sample: sqrt(||a - b||^2 + c^2) - c, the norm over every element of
/// a sample. a, b [B, ...] -> [B].
torch::Tensor pseudo_huber(const torch::Tensor& a, const torch::Tensor& b, double c);

/// iCT's default Huber constant c = 0.00054 sqrt(d) for samples of d elements.
double ict_huber_c(int64_t elements);

/// TrigFlow / sCM training time from a log-normal proposal: t = atan(exp(tau) / sigma_d).
torch::Tensor trigflow_time(const torch::Tensor& tau, double sigma_d);

/// sCM's training target (Lu & Song 2024, Algorithm 1, without the adaptive weighting): the
/// direction g = cos t * df/dt along the PF-ODE of the consistency function
/// f = cos t x_t - sin t sigma_d F, with the tangent warm-up r in [0, 1] on its second term,
///   g = -cos^2 t (sigma_d F - dx_dt) - r cos t sin t (x_t + sigma_d dF_dt),
/// normalised per sample: g / (||g|| + c_norm). All tensors [B, ...]; t [B] (float); warmup_r a
/// 0-dim tensor (on the host or the tensors' device: a captured step computes it there). The loss is
/// || F_theta - stopgrad(F + g) ||^2: gradient descent moves F along +df/dt (FORMULAS section 3).
torch::Tensor scm_target_direction(const torch::Tensor& x_t, const torch::Tensor& t,
                                   const torch::Tensor& F, const torch::Tensor& dF_dt,
                                   const torch::Tensor& dx_dt, double sigma_d, const torch::Tensor& warmup_r,
                                   double c_norm = 0.1);

}  // namespace unidiff::objectives
