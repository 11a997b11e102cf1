// Samplers over any schedule (FORMULAS.md section 4), written against two kinds of model:
//   DenoiseFn      E[x0 | x_t] at schedule time t (any network with a declared prediction, via
//                  from_prediction, or an analytic oracle);
//   ConsistencyFn  the data end of the probability-flow ODE trajectory through x_t (a consistency
//                  model, a one-step generator, or an oracle).
// Fresh noise comes from NoiseFn(i), keyed by the caller per sample.
#pragma once

#include <torch/types.h>

#include <functional>
#include <vector>

#include "objectives/parameterization.h"
#include "objectives/sampling/ddim.h"
#include "objectives/sampling/ddpm.h"
#include "objectives/schedule.h"

namespace unidiff::objectives {

using ConsistencyFn = std::function<torch::Tensor(const torch::Tensor& x, double t)>;

enum class OdeMethod { kEuler, kHeun };

/// The probability-flow ODE dx/dt = alpha' x0 + sigma' eps, eps = (x - alpha x0) / sigma, from
/// t_max to t_min on schedule.time_grid(steps) with Euler or Heun (Heun's correction is skipped
/// on a step that ends where sigma = 0). If sigma(t_min) > 0, a final denoising returns
/// E[x0 | x_{t_min}]. Rectified-flow Euler is this with the rf schedule (x <- x - u dt).
torch::Tensor sample_ode(const DenoiseFn& denoise, const Schedule& schedule, torch::Tensor x_T,
                         int64_t steps, OdeMethod method);

/// Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1) on the ve schedule: noise levels
/// geometric from t_max to t_min (`levels` of them), `inner` steps each with step size
/// a_i = step_eps * sigma_i^2 / sigma_L^2: x <- x + a_i / 2 * score + sqrt(a_i) z. Noise i counts
/// all inner steps. A final denoising returns E[x0 | x] at the last level.
torch::Tensor sample_smld(const DenoiseFn& denoise, const Schedule& schedule, torch::Tensor x_T,
                          int64_t levels, int64_t inner, double step_eps, const NoiseFn& noise);

/// Multistep consistency sampling (Algorithm 4, and the same "denoise then re-noise" loop for LCM
/// (Algorithm 5), TrigFlow/sCM and DMD few-step generators): x = f(x_T, times[0]); for each later
/// time tau: re-noise x to tau, x = f(x, tau). Re-noising is x + sqrt(tau^2 - t_min^2) z on ve
/// (x sits at sigma = t_min) and alpha_tau x + sigma_tau z elsewhere.
torch::Tensor sample_multistep(const ConsistencyFn& f, const Schedule& schedule, torch::Tensor x_T,
                               const std::vector<double>& times, const NoiseFn& noise);

/// A consistency function from a denoiser by integrating the probability-flow ODE from t to
/// t_min with `steps` Heun steps (uniform in t, Karras on ve) and a final denoising: the exact
/// consistency function of the denoiser up to discretisation error.
ConsistencyFn ode_consistency(const DenoiseFn& denoise, const Schedule& schedule, int64_t steps);

/// TrigFlow's step (handbook 2.5.2): x_s = cos(t - s) x_t - sin(t - s) sigma_d F, F the network's
/// output at x_t (schedule time t).
torch::Tensor trigflow_step(const torch::Tensor& x_t, const torch::Tensor& F, double t, double s,
                            double sigma_d);

/// DDPM's "simple" step (Algorithm 2): x_{prev} = (x_t - beta / sqrt(1 - abar_t) eps) / sqrt(1 - beta)
/// + sqrt(beta) z on the chain respaced between t and prev (sigma_t^2 = beta_t; no noise when
/// prev = -1).
torch::Tensor ddpm_simple_step(const DdpmSchedule& schedule, const torch::Tensor& x_t,
                               const torch::Tensor& eps, int64_t t, int64_t prev,
                               const torch::Tensor& z);

enum class InstaflowVariant { kPosterior, kSimple, kDdim };
/// InstaFlow sampling (Algorithms 6, 7, 8): the network predicts w on x^RF (Prediction::kInstaflow);
/// (32, 33) give x0 and eps, then a DDPM posterior step, the simple step or a DDIM step (eta).
torch::Tensor sample_instaflow(const EpsFn& w_fn, const Schedule& schedule, torch::Tensor x_T,
                               const DdpmSamplerOptions& options, InstaflowVariant variant,
                               double eta, const NoiseFn& noise);

/// Classifier-free guidance (FORMULAS (23)) in the convention w = 1 means no guidance:
/// uncond + w (cond - uncond). (Papers writing (1 + w) cond - w uncond use w' = w - 1.)
torch::Tensor cfg_combine(const torch::Tensor& cond, const torch::Tensor& uncond, double w);

}  // namespace unidiff::objectives
