// The one DDIM (FORMULAS (14)) in the unified form x_t = alpha_t x0 + sigma_t eps, for every
// schedule: discrete DDPM tables (integer or interpolated times), ve, rf and TrigFlow. A step from
// time t to s takes the denoised x0 (and eps = (x_t - alpha_t x0) / sigma_t) and lands on
//
//   x_s = alpha_s x0 + sqrt(sigma_s^2 - c^2) eps + c z,
//   c   = eta sigma_s sqrt(1 - (alpha_t sigma_s / (alpha_s sigma_t))^2),
//
// the forward process's posterior std between s and t scaled by eta (eta = 0: deterministic, an
// exponential integrator of the probability-flow ODE; eta = 1: ancestral sampling). A step to
// clean data (alpha_s = 1, sigma_s = 0) returns x0. The DDPM-table sampler (`ddim` on a
// subsequence of code indices), the unified one (`ddim` on any schedule's grid) and progressive
// distillation's teacher steps and N-step sampler all run this step.
#pragma once

#include <torch/types.h>

#include <functional>
#include <vector>

#include "objectives/sampling/ddpm.h"
#include "objectives/schedule.h"

namespace unidiff::objectives {

/// E[x0 | x_t] at schedule time t.
using DenoiseFn = std::function<torch::Tensor(const torch::Tensor& x, double t)>;

/// A sampling run step by step, for methods that need more than the result (DDPO's policy
/// log-probabilities, DRaFT's chain). Filled by the samplers that take a `Trajectory*`.
struct Trajectory {
  std::vector<torch::Tensor> x;         ///< the state before each step, then the result (steps + 1)
  std::vector<double> t;                ///< each step's start time (schedule time or code index)
  std::vector<double> t_next;           ///< each step's end time (-1: clean data)
  std::vector<torch::Tensor> mean;      ///< each step's Gaussian mean (deterministic steps: the result)
  std::vector<double> std;              ///< its standard deviation (0: deterministic)
  std::vector<torch::Tensor> log_prob;  ///< float64 [B] log-density of the step taken (FORMULAS (51));
                                        ///< undefined for deterministic steps
  void clear() { *this = {}; }
};

/// The Gaussian of one DDIM step: x_s ~ N(mean, std^2 I).
struct DdimStep {
  torch::Tensor mean;
  double std = 0;
};

/// c of the header comment (0 when eta = 0 or s is clean data).
double ddim_noise_std(double eta, double alpha_t, double sigma_t, double alpha_s, double sigma_s);

/// The step from (x_t, x0) at (alpha_t, sigma_t) to (alpha_s, sigma_s) with stochasticity eta.
DdimStep ddim_step_distribution(const torch::Tensor& x_t, const torch::Tensor& x0, double alpha_t, double sigma_t,
                                double alpha_s, double sigma_s, double eta);

/// The deterministic step with per-sample coefficients (tensors broadcastable against x_t, e.g.
/// [B, 1]): alpha_s x0 + sigma_s (x_t - alpha_t x0) / sigma_t.
torch::Tensor ddim_step_deterministic(const torch::Tensor& x_t, const torch::Tensor& x0, const torch::Tensor& alpha_t,
                                      const torch::Tensor& sigma_t, const torch::Tensor& alpha_s,
                                      const torch::Tensor& sigma_s);

/// DDIM through `times` (decreasing schedule times; step i goes from times[i] to times[i + 1],
/// the last from times.back() to clean data unless sigma there is already 0). x0 = denoise(x, t),
/// clamped to [-1, 1] with `clip_x0` (eps then recomputed from the clamped x0). Step i draws
/// noise(i) when its c > 0. Records into `trajectory` when given.
torch::Tensor sample_ddim_times(const DenoiseFn& denoise, const Schedule& schedule, torch::Tensor x_T,
                                const std::vector<double>& times, double eta, bool clip_x0, const NoiseFn& noise,
                                Trajectory* trajectory = nullptr);

/// One DDIM step (14) on the DDPM tables from code index t to prev (-1: to clean data) given eps;
/// z is used only when the step's std is positive.
torch::Tensor ddim_step(const DdpmSchedule& schedule, const torch::Tensor& x_t, const torch::Tensor& eps, int64_t t,
                        int64_t prev, double eta, const torch::Tensor& z, bool clip_x0 = false);

/// Mean and std of that step: x_prev ~ N(mean, std^2 I).
std::pair<torch::Tensor, double> ddim_step_distribution(const DdpmSchedule& schedule, const torch::Tensor& x_t,
                                                        const torch::Tensor& eps, int64_t t, int64_t prev, double eta);

/// DDIM on the DDPM tables over options.steps code indices (spaced as options.spacing), then to
/// clean data; eps_fn takes the code indices as int64 [B].
torch::Tensor sample_ddim(const EpsFn& eps_fn, const DdpmSchedule& schedule, torch::Tensor x_T,
                          const DdpmSamplerOptions& options, double eta, const NoiseFn& noise,
                          Trajectory* trajectory = nullptr);

/// DDIM on any schedule over schedule.time_grid(steps), then a final denoising where sigma(t_min) > 0.
torch::Tensor sample_ddim_any(const DenoiseFn& denoise, const Schedule& schedule, torch::Tensor x_T, int64_t steps,
                              double eta, const NoiseFn& noise, Trajectory* trajectory = nullptr);

/// The DDIM step (eta) from code index t to s per sample (float [B]; s < 0: clean data) on the
/// DDPM tables, given eps at x_t, as the Gaussian it draws from: x0 = (x_t - sigma_t eps) /
/// alpha_t, mean = alpha_s x0 + sqrt(sigma_s^2 - c^2) eps, std c (c of the header comment; 0 to
/// clean data or with eta 0, where the step is its mean). DDPO's policy step and consistency
/// distillation's teacher solver; the same step as ddim_step with per-sample times.
struct DdimGaussian {
  torch::Tensor mean;  ///< [B, ...]
  torch::Tensor std;   ///< [B] float64
};
DdimGaussian ddim_gaussian(const Schedule& schedule, const torch::Tensor& x_t, const torch::Tensor& eps,
                           const torch::Tensor& t, const torch::Tensor& s, double eta);

/// Gaussian policy log-density of a stochastic step (DDPO, FORMULAS (48-51)): per sample,
/// -||x_prev - mean||^2 / (2 std^2) - d log std - (d / 2) log(2 pi), float64 [B]. std > 0.
torch::Tensor step_log_prob(const torch::Tensor& x_prev, const torch::Tensor& mean, double std);

}  // namespace unidiff::objectives
