// Progressive distillation as a two-group experiment: a frozen teacher and a trained student
// initialised from it (objectives/distill/progressive.h). Each round halves the sampling steps:
// the student learns to match two teacher DDIM steps with one, then becomes the next round's
// teacher (its EMA weights), from `start_steps` / 2 down to `end_steps`. After every round rank 0
// measures the sliced Wasserstein distance to the data of the student sampled with its N steps and
// of the original teacher sampled with the same N DDIM steps, logs it, appends it to
// RUN_DIR/rounds.jsonl and saves the student as RUN_DIR/student-N.h5 (a model file).
#pragma once

#include <torch/types.h>

#include <cstdint>

#include "experiments/config.h"
#include "experiments/model_group.h"
#include "objectives/distill/progressive.h"
#include "objectives/schedule.h"

namespace unidiff::experiments {

struct DistillRound {
  int64_t steps = 0;             ///< the student's sampling steps N
  double student_sw = 0;         ///< SW(student with N steps, data)
  double teacher_sw = 0;         ///< SW(original teacher with N DDIM steps, data)
  double final_loss = 0;         ///< mean loss of the round's last logging window
};

struct DistillResult {
  std::vector<DistillRound> rounds;
  double teacher_full_sw = 0;    ///< SW(teacher with start_steps steps, data)
  double data_sw = 0;            ///< SW between two disjoint halves of the data: the floor
  double replica_divergence = 0;
  bool stopped = false;          ///< stopped by a signal or --train_stop_at, checkpointed
};

DistillResult distill_progressive(const TrainConfig& config);

/// One student step of a round of `n` steps, as distill_progressive runs it: progress s = k / n
/// with k uniform in 1..n and the noise keyed by (seed, global_step, sample index), dropout masks
/// keyed the same way, the teacher's two DDIM half steps, the student's loss, backward and the
/// group's update with the learning rate of `round_step`. x0 and `index` on the run's device.
/// Queues device work only: nothing in it waits for the device. Returns the detached loss.
torch::Tensor progressive_step(ModelGroup& student, const objectives::X0Fn& teacher_x0,
                               const objectives::X0Fn& student_x0, const objectives::Schedule& schedule,
                               const torch::Tensor& x0, const torch::Tensor& index, int64_t n, uint32_t seed,
                               int64_t global_step, int64_t round_step);

}  // namespace unidiff::experiments
