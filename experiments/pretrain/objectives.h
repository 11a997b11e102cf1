// The pre-training objectives (FORMULAS.md section 3), one registry for training and sampling.
// An objective says how a training step turns clean data into (network input, target, loss) and
// what a trained network's output means to the samplers. Every random draw is keyed by
// (seed, purpose, step, global sample index), so a step is the same on any number of ranks.
//
//   name      schedule (x_t = alpha x0 + sigma eps)  network sees (x, time)        output / loss
//   ddpm      discrete VP, t = 0..T-1                (x_t, t)                      eps, x0 or v; MSE
//   rf        1 - t, t; t ~ U, logit-N, or 1         (x_t, 1000 t)                 u = eps - x0; MSE
//   ncsn      1, sigma; ln sigma ~ U[ln s_min, ln s_max]  (c_in x, 250 ln sigma)   F = eps, score = -F / sigma;
//                                                                                  DSM with lambda = sigma^2
//   trigflow  cos t, sigma_d sin t; t = atan(e^tau / sigma_d)  (x_t / sigma_d, 1000 t)  F; ||sigma_d F - v_t||^2
//   ict       1, sigma (Karras grid, iCT curriculum) (c_in x, 250 ln sigma)        f = c_skip x + c_out F;
//                                                                                  pseudo-Huber CT loss
//   scm       as trigflow                             (x_t / sigma_d, 1000 t)       f = cos t x - sin t sigma_d F;
//                                                                                  sCT with a JVP
//
// c_in = 1 / sqrt(sigma^2 + sigma_d^2) (EDM); 250 ln sigma is the consistency models' 1000 ln(sigma) / 4.
#pragma once

#include <cstdint>
#include <utility>
#include <functional>
#include <memory>
#include <string>
#include <map>
#include <vector>

#include <torch/types.h>

#include "core/rng.h"
#include "experiments/config.h"
#include "models/network.h"
#include "objectives/losses.h"
#include "objectives/sampling/ode.h"
#include "objectives/schedule.h"

namespace unidiff::experiments {

enum class Objective { kDdpm, kRf, kNcsn, kTrigflow, kIct, kScm };

/// The objective a config trains: its `objective` name, or (empty) rf for schedule rf, else ddpm.
/// An unknown name throws InputError listing the known ones.
Objective resolve_objective(const DiffusionConfig& config);
std::string to_string(Objective o);
const std::vector<std::string>& objective_names();

/// The config with the objective's defaults filled in (objective name, P_mean / P_std) and its
/// settings checked; InputError names the bad flag. With a context, also the defaults that depend
/// on the data and the run (ict's pseudo-Huber c from the sample size, sCM's tangent warm-up from
/// the steps).
DiffusionConfig resolve_diffusion(const DiffusionConfig& config);

/// What the training loop hands an objective for one step.
struct StepData {
  StepData() = default;
  StepData(torch::Tensor x0, torch::Tensor index, torch::Tensor labels, int64_t step, torch::Tensor step_counter = {})
      : x0(std::move(x0)), index(std::move(index)), labels(std::move(labels)), step(step),
        step_counter(std::move(step_counter)) {}

  torch::Tensor x0;      ///< clean batch [B, ...] (float, on the device)
  torch::Tensor index;   ///< global sample indices [B] (int64): the key of every per-sample draw
  torch::Tensor labels;  ///< class labels after CFG dropout [B], or undefined
  int64_t step = 0;      ///< optimizer step (0-based)
  /// `step` as a 0-dim int64 tensor on the device, or undefined. A captured CUDA graph replays
  /// the step's kernels with this counter advanced on the device, so the keyed draws read it.
  torch::Tensor step_counter;

  /// The key of this step's draws.
  rng::StepKey step_key() const {
    return step_counter.defined() ? rng::StepKey(step_counter) : rng::StepKey(static_cast<uint64_t>(step));
  }
};

class PretrainObjective {
 public:
  virtual ~PretrainObjective() = default;
  /// Host-side work before step `step`'s loss (a curriculum's new tables), run outside any
  /// captured CUDA graph. Returns a key of what the step's kernels depend on besides their
  /// inputs: a captured step is captured again when it changes (0: never).
  virtual int64_t prepare(int64_t step) { (void)step; return 0; }
  /// The loss of one step (differentiable in the network's parameters). Launches kernels only:
  /// no host synchronisation, so a CUDA graph can capture it (after prepare()).
  virtual objectives::LossOutput loss(models::Network& net, const StepData& batch) = 0;
  /// One line for the log, e.g. "consistency training (iCT, ...)".
  virtual std::string describe() const = 0;
  /// The settings (flag names of diffusion_settings()) its mathematics depends on: the resume
  /// guard records them.
  virtual std::vector<std::string> setting_names() const = 0;
};

struct ObjectiveContext {
  uint32_t seed = 0;                  ///< the run's key
  int64_t total_steps = 1;            ///< the run's optimizer steps (curricula, warm-ups)
  std::vector<int64_t> data_shape;    ///< one sample's shape
  torch::Device device = torch::kCPU; ///< where the step runs
};
/// resolve_diffusion with the defaults that depend on the data and the run filled in too.
DiffusionConfig resolve_diffusion(const DiffusionConfig& config, const ObjectiveContext& context);


/// Builds the objective of a resolved config.
std::unique_ptr<PretrainObjective> make_pretrain_objective(const DiffusionConfig& resolved,
                                                           const ObjectiveContext& context);

/// A network call in the objective's input variables: (x_in, time_in) -> raw output.
using NetFn = std::function<torch::Tensor(const torch::Tensor& x_in, const torch::Tensor& time_in)>;

/// What a trained network is to the samplers of a continuous-time objective (all but ddpm):
/// the schedule, and a denoiser E[x0 | x_t] (rf, ncsn, trigflow) or a consistency function
/// (ict, scm), both taking the schedule time t.
struct ModelFunctions {
  objectives::Schedule schedule;
  objectives::DenoiseFn denoise;          ///< undefined for consistency models
  objectives::ConsistencyFn consistency;  ///< undefined for denoisers
  std::vector<std::string> samplers;      ///< the samplers it takes, the default first
};
ModelFunctions model_functions(const DiffusionConfig& resolved, const NetFn& net);

}  // namespace unidiff::experiments
