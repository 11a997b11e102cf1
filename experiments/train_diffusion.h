// Training loop of the DDPM family on vector data: data-parallel over the job's ranks, keyed
// randomness per sample, AdamW with warm-up and decay, EMA, progress on rank 0, metrics.jsonl and
// the model file in the run directory.
#pragma once

#include <torch/types.h>

#include <string>

#include "experiments/config.h"
#include "experiments/model_group.h"
#include "experiments/objective.h"

namespace unidiff::experiments {

struct TrainResult {
  double final_loss = 0;         ///< mean loss over the last logging window, over all ranks
  int64_t steps = 0;             ///< steps run
  double replica_divergence = 0; ///< max |param - rank 0's param| at the end (0 when in sync)
  int64_t start_step = 0;        ///< the step the run resumed from (0: a fresh start)
  bool stopped = false;          ///< stopped early by a signal or --train_stop_at, checkpointed
};

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
/// kernels only (what experiments/graph_step.h captures). Returns the detached loss.
torch::Tensor pretrain_step_kernels(ModelGroup& group, PretrainObjective& objective, const StepData& data,
                                    uint32_t seed, const std::string& precision, bool channels_last);

/// Validates everything (data, shapes, flags) before writing anything; bad input throws
/// InputError and leaves an existing run directory untouched. Resumes from the checkpoint that
/// --resume selects; checkpoints every --save_every steps / --save_every_minutes, at the end, and
/// when SIGTERM/SIGUSR1 arrives on any rank (then returns with `stopped`).
TrainResult train_diffusion(const TrainConfig& config);

}  // namespace unidiff::experiments
