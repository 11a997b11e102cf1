// Pre-training (--method=pretrain, alias ddpm): one network trained by one of the objectives of
// experiments/pretrain/objectives.h on the run's data, data-parallel over the job's ranks, with
// keyed randomness per sample, AdamW with warm-up and decay, EMA, and optionally the whole step
// in a CUDA graph (experiments/pretrain/graph_step.h).
#pragma once

#include <torch/types.h>

#include <string>

#include "core/settings.h"
#include "experiments/config.h"
#include "experiments/pretrain/objectives.h"
#include "experiments/run/model_group.h"

namespace unidiff::experiments {

/// The method's own settings: the network and the objective.
struct PretrainConfig {
  models::NetworkConfig network;
  DiffusionConfig diffusion;
  std::string init_from;  ///< start from these weights (a model file or run directory, EMA)
};
const settings::Table<PretrainConfig>& pretrain_settings();

/// What one pre-training step leaves: its loss (detached, on the device: reading it syncs) and the
/// learning rate it used.
struct StepOutcome {
  torch::Tensor loss;
  double lr = 0;
};

/// One optimizer step of pre-training, exactly as `unidiff train` runs it: zero the group's
/// gradients; the objective's loss with dropout keyed by (seed, step, sample index), under
/// `precision`'s autocast (models/precision.h) and with the images in channels-last layout when
/// asked; backward; the group's reducer, clipping, AdamW and EMA. No host synchronisation.
/// It is objective.prepare(step) and group.schedule(step) (host work: tables, learning rate, EMA
/// weight) followed by pretrain_step_kernels().
StepOutcome pretrain_step(ModelGroup& group, PretrainObjective& objective, const StepData& data, uint32_t seed,
                          const std::string& precision, bool channels_last);

/// The device half of pretrain_step: zero the gradients, loss, backward, group.update(). Launches
/// kernels only (what experiments/pretrain/graph_step.h captures). Returns the detached loss.
torch::Tensor pretrain_step_kernels(ModelGroup& group, PretrainObjective& objective, const StepData& data,
                                    uint32_t seed, const std::string& precision, bool channels_last);

/// --init_from: copies a trained model's (EMA) weights into `model`; the architectures must match.
void init_weights(const std::string& from, const models::NetworkConfig& net_cfg, models::Network& model);

}  // namespace unidiff::experiments
