// Samplers for discrete DDPM models (FORMULAS.md section 4): ancestral sampling (Algorithm 1) on
// any timestep subsequence of the model's T steps (DDIM is objectives/sampling/ddim.h). The model is passed as
// a function returning eps; fresh noise comes from a function of the step number, so callers key
// it per sample and results do not depend on how samples are batched.
#pragma once

#include <torch/types.h>

#include <functional>
#include <string>
#include <vector>

#include "objectives/ddpm_schedule.h"

namespace unidiff::objectives {

struct Trajectory;  // objectives/sampling/ddim.h

/// eps_theta(x_t [B, ...], t int64 [B] code indices) -> [B, ...].
using EpsFn = std::function<torch::Tensor(const torch::Tensor& x, const torch::Tensor& t)>;
/// Fresh standard-normal noise shaped like the batch for sampler step `i` (0 = first step).
using NoiseFn = std::function<torch::Tensor(int64_t i)>;

enum class Spacing {
  kLeading,   ///< 0, k, 2k, ... (k = T / K), DDIM's original spacing
  kTrailing,  ///< T-1, T-1-k, ... down to about k - 1 (always includes the last step)
  kUniform,   ///< (T-1) j / K for j = K .. 1, real-valued on the interpolated schedule (progressive
              ///< distillation's grid; DDIM only)
};
Spacing parse_spacing(const std::string& name);

/// K code indices in decreasing order (K <= T). K == T gives T-1, ..., 0 for both spacings.
/// kUniform is not a subsequence of code indices: InputError.
std::vector<int64_t> timestep_subsequence(int64_t num_steps, int64_t k, Spacing spacing);

struct DdpmSamplerOptions {
  int64_t steps = 0;                    ///< K sampling steps; 0 = all T
  Spacing spacing = Spacing::kLeading;  ///< how the K steps are placed
  bool clip_x0 = false;                 ///< clip x0_hat to [-1, 1] (images)
};

/// The mean of that step: the posterior mean (8) given x0_hat by Tweedie (7).
torch::Tensor ddpm_step_mean(const DdpmSchedule& schedule, const torch::Tensor& x_t, const torch::Tensor& eps,
                             int64_t t, int64_t prev, bool clip_x0 = false);

/// One ancestral step from code index t to prev (< t; -1 means "to x0", no noise): x0_hat by
/// Tweedie (7), then the posterior (8) of the chain respaced between t and prev. z: [B, ...].
torch::Tensor ddpm_step(const DdpmSchedule& schedule, const torch::Tensor& x_t,
                        const torch::Tensor& eps, int64_t t, int64_t prev, const torch::Tensor& z,
                        bool clip_x0 = false);

/// Ancestral sampling, Algorithm 1: x0_hat by Tweedie, then x_{prev} ~ q(x_prev | x_t, x0_hat).
/// On a subsequence the chain is respaced (beta'_i = 1 - abar_{tau_i} / abar_{tau_{i-1}}), which
/// keeps (8) exact on the subsequence. No noise is added at the last step. x_T: [B, ...].
/// Records into `trajectory` when given (objectives/sampling/ddim.h).
torch::Tensor sample_ddpm(const EpsFn& eps_fn, const DdpmSchedule& schedule, torch::Tensor x_T,
                          const DdpmSamplerOptions& options, const NoiseFn& noise,
                          Trajectory* trajectory = nullptr);


}  // namespace unidiff::objectives
