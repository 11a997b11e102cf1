// One sampler registry (FORMULAS.md section 4). A sampler is registered once, by name, against
// what a model means to it: eps on a discrete DDPM schedule, a denoiser E[x0 | x_t], a
// consistency function, or InstaFlow's w-prediction. A model (a trained network, the mixture
// oracle, a distilled generator) describes itself as a SamplerModel: its schedule, the functions
// it provides and, for a trained network, the samplers it takes (its default first). `unidiff
// sample`, the oracle, the evaluation during training and every method that samples go through
// run_sampler.
#pragma once

#include <torch/types.h>

#include <functional>
#include <string>
#include <vector>

#include "objectives/sampling/ddim.h"
#include "objectives/sampling/ddpm.h"
#include "objectives/sampling/ode.h"
#include "objectives/schedule.h"

namespace unidiff::objectives {

/// What a model is to the samplers. Undefined functions are what it does not provide.
struct SamplerModel {
  Schedule schedule;
  EpsFn eps;                  ///< eps at DDPM code indices (int64 [B]; float64 between them)
  DenoiseFn denoise;          ///< E[x0 | x_t] at schedule time t
  ConsistencyFn consistency;  ///< the data end of the probability-flow trajectory through x_t
  EpsFn instaflow_w;          ///< InstaFlow's w on x^RF at DDPM code indices
  /// The samplers this model takes, its default first; empty: every sampler whose needs it meets
  /// on its schedule (the oracle).
  std::vector<std::string> samplers;
  int64_t default_steps = 0;  ///< steps when none are asked (0: T on DDPM tables, else 50)
  std::string kind;           ///< what to call it in messages ("a DDPM model", "the oracle")
};

struct SamplerOptions {
  int64_t steps = 0;                    ///< 0: the model's default
  Spacing spacing = Spacing::kLeading;  ///< DDPM tables: where the steps sit
  double eta = 0;                       ///< ddim: stochasticity; instaflow (ddim variant) too
  bool clip_x0 = false;                 ///< clamp each x0 estimate to [-1, 1] (ddpm, ddim)
  std::vector<double> times;            ///< cm: explicit decreasing times (empty: the grid)
  int64_t grid = 0;                     ///< lcm: the model's training grid of N trailing steps (its times
                                        ///< are taken from it); 0: the trailing steps of T
  int64_t smld_inner = 20;              ///< smld: Langevin steps per level
  double smld_step = 0.2;               ///< smld: a_i / sigma_i^2
  InstaflowVariant instaflow = InstaflowVariant::kDdim;
};

/// The lcm sampler's times: the trailing `steps` of T (grid 0), or for a consistency model trained
/// on a grid of N trailing steps g_i = T - 1 - i T / N (grid = N; consistency distillation,
/// LCM's skipping steps) the grid points g_{floor(j N / steps)}, j = 0 .. steps - 1: times it was
/// trained at (the trailing steps of T are not, unless steps divides N). steps <= N.
std::vector<int64_t> lcm_times(int64_t num_steps, int64_t steps, int64_t grid);

struct SamplerSpec {
  enum class Needs { kEps, kDenoise, kConsistency, kInstaflow, kEpsOrDenoise };
  std::string name;
  std::string summary;
  Needs needs;
  std::vector<ScheduleFamily> families;  ///< empty: every schedule
  std::string takes;                     ///< the schedules in words, for refusals
  bool records = false;                  ///< fills a Trajectory (ddpm, ddim)
  std::function<torch::Tensor(const SamplerModel&, torch::Tensor x_T, const SamplerOptions&, int64_t steps,
                              const NoiseFn&, Trajectory*)>
      run;
};

/// Every sampler, in the order `unidiff sample --help` lists them.
const std::vector<SamplerSpec>& samplers();
std::string sampler_names();

/// The sampler `name` (empty: the model's default) checked against the model: a trained model
/// refuses one outside its list ("unknown --sampler 'x' for a ict model (valid: cm)"), the
/// oracle one that does not take its schedule ("sampler 'smld' takes schedules: ve (got 'rf')").
const SamplerSpec& select_sampler(const std::string& name, const SamplerModel& model);

/// The steps a sampler runs: options.steps, else the model's default.
int64_t sampler_steps(const SamplerModel& model, const SamplerOptions& options);

/// Runs `spec` from x_T [B, ...]; sampler step i draws noise(i). Records into `trajectory` when
/// given (InputError if the sampler cannot).
torch::Tensor run_sampler(const SamplerSpec& spec, const SamplerModel& model, torch::Tensor x_T,
                          const SamplerOptions& options, const NoiseFn& noise, Trajectory* trajectory = nullptr);

}  // namespace unidiff::objectives
