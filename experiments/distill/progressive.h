// Progressive distillation (--method=progressive; objectives/distill/progressive.h) with three
// groups: the original teacher (frozen, for the comparisons), the current teacher (frozen) and
// the student initialised from it (trained). Each round halves the sampling steps: the student
// learns to match two teacher DDIM steps with one, then its EMA weights become the next round's
// teacher, from `start_steps` / 2 down to `end_steps`. After every round rank 0 measures the
// sliced Wasserstein distance to the data of the student sampled with its N steps and of the
// original teacher sampled with the same N DDIM steps, logs it, appends it to RUN_DIR/rounds.jsonl
// and saves the student as RUN_DIR/student-N.h5; RUN_DIR/model.h5 is the last student. Students
// are sampled by default with deterministic DDIM on their own grid (--spacing=uniform, N steps).
//
// Guided progressive distillation (--pd_guided; Meng et al. 2023, handbook 3.2.6) of a
// class-conditional teacher: a first stage of --pd_round_steps distils the classifier-free-guided
// teacher uncond + w (cond - uncond), w drawn per sample from [--pd_w_min, --pd_w_max], into a
// guidance-conditioned student (models/network.h, forward_guided) at the teacher's start_steps;
// then the halving rounds, every teacher and student called at the sample's w. The students
// sample at any w of the range in one network call per step (`unidiff sample --cfg_scale=w`); the
// rounds' comparisons are at the range's midpoint.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <string>

#include "core/settings.h"
#include "experiments/run/model_group.h"
#include "objectives/distill/progressive.h"
#include "objectives/schedule.h"

namespace unidiff::experiments {

struct ProgressiveConfig {
  std::string teacher;            ///< a model file or a run directory (EMA weights)
  int64_t start_steps = 256;      ///< the teacher's sampling steps; round 1's student takes half
  int64_t end_steps = 1;          ///< the last round's student steps
  int64_t round_steps = 500;      ///< optimizer steps per round
  bool guided = false;            ///< guided distillation (a first stage, then w-conditioned rounds)
  double w_min = 1.0, w_max = 4.0;  ///< guided: the range of guidance scales
};
const settings::Table<ProgressiveConfig>& progressive_settings();

/// One student step of a round of `n` steps, as the method runs it: progress s = k / n with k
/// uniform in 1..n and the noise keyed by (seed, global_step, sample index), dropout masks keyed
/// the same way, the teacher's two DDIM half steps, the student's loss, backward and the group's
/// update with the learning rate of `round_step`. x0 and `index` on the run's device. Queues
/// device work only: nothing in it waits for the device. Returns the detached loss.
/// With `first_stage`, the guided distillation's first stage instead: the student's x0 matches the
/// teacher's (the guided teacher's X0Fn) at the same point (objectives guidance_distillation_loss).
torch::Tensor progressive_step(ModelGroup& student, const objectives::X0Fn& teacher_x0,
                               const objectives::X0Fn& student_x0, const objectives::Schedule& schedule,
                               const torch::Tensor& x0, const torch::Tensor& index, int64_t n, uint32_t seed,
                               int64_t global_step, int64_t round_step, bool first_stage = false);

}  // namespace unidiff::experiments
