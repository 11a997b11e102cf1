// What a training run puts in its sharded checkpoints (dist/checkpoint.h) and how it comes back.
// Per trained model group G: `G/params/<name>` and `G/ema/<name>` (replicated), the AdamW moments
// `G/adam_m/<name>` and `G/adam_v/<name>` per parameter (pieces of each rank's shard under
// ZeRO-1, so they re-slice onto any world size), and attributes `G/optimizer_steps`,
// `G/ema_updates`. Per frozen group: `G/params/<name>` only (float32 whatever its storage). Run state:
// `step`, each data stream's position, and `config/<key>` strings of the settings a resume must
// not silently change, with `settings_version` and their `config_hash`. A method adds its own
// state (the progressive-distillation round) as further attributes through the same writer.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>

#include "dist/checkpoint.h"
#include "experiments/config.h"
#include "experiments/run/model_group.h"

namespace unidiff::experiments {

/// Adds group `g` to the checkpoint: this rank's pieces (a frozen group: its parameters).
void save_group(dist::CheckpointWriter& writer, ModelGroup& g);
/// Restores group `g` from the checkpoint, re-slicing the optimizer state for this world size.
/// A frozen group the checkpoint does not hold (written before frozen groups were saved) keeps
/// the weights it was built with.
void load_group(const dist::CheckpointReader& reader, ModelGroup& g);
void save_groups(dist::CheckpointWriter& writer, ModelGroups& groups);
void load_groups(const dist::CheckpointReader& reader, ModelGroups& groups);

/// The settings a resume must not silently change, by name (the guard).
using Guard = std::map<std::string, std::string>;

/// The version of the guard's naming this build writes (checkpoints without one are older: their
/// names and number formats are converted on reading).
inline constexpr int64_t kSettingsVersion = 2;

/// Records `settings` as `config/<key>` attributes, `settings_version` and `config_hash`.
void save_settings(dist::CheckpointWriter& writer, const Guard& settings);
/// A stable 64-bit hash (FNV-1a) of the settings, as 16 hex digits: the same settings give the
/// same hash in every build and on every machine.
std::string settings_hash(const Guard& settings);
/// The settings a checkpoint recorded, in this build's names (older checkpoints converted).
Guard recorded_settings(const dist::CheckpointReader& reader);
/// The settings that differ between the checkpoint and this run, one "key: was -> now" each. A
/// setting an older checkpoint did not record is not compared.
std::vector<std::string> changed_settings(const dist::CheckpointReader& reader, const Guard& settings);

/// The per-step checkpoint decision shared by the training loops: a stop signal on any rank (one
/// MAX all-reduce per step), --train_stop_at, --save_every steps, --save_every_minutes (rank 0's
/// clock decides for everyone). Collective: every rank calls after_step at every step.
class CheckpointPolicy {
 public:
  CheckpointPolicy(const CheckpointConfig& config, dist::Communicator& comm);
  struct Decision {
    bool save = false;  ///< write a checkpoint now
    bool stop = false;  ///< then stop (signal or --train_stop_at)
    int signal = 0;     ///< the signal that asked (0: --train_stop_at or none)
  };
  /// After `steps_done` steps in all; `last` is the run's final step.
  Decision after_step(int64_t steps_done, bool last);

 private:
  CheckpointConfig config_;
  dist::Communicator& comm_;
  std::chrono::steady_clock::time_point last_save_;
};

/// The checkpoint a run in `run_dir` resumes from (none with --overwrite, which starts afresh),
/// opened and verified; settings that differ from `settings` are refused with a "key: was -> now"
/// list unless --allow_config_change (then they are logged).
std::optional<dist::CheckpointReader> open_resume(const std::string& run_dir, const CheckpointConfig& config,
                                                  bool overwrite, const Guard& settings);

/// The checkpoint `--resume` selects in `run_dir`, opened and verified: never -> none; auto -> the
/// newest complete one there (none if there is none); a path -> that checkpoint directory, or the
/// newest complete one in that run directory (InputError if there is none or it is damaged).
std::optional<dist::CheckpointReader> checkpoint_to_resume(const std::string& resume,
                                                           const std::filesystem::path& run_dir);

}  // namespace unidiff::experiments
