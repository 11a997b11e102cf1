// Pieces of the training run's bookkeeping: checks of optimiser settings, the run directory, and
// human-readable durations and rates.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "core/progress.h"
#include "experiments/config.h"

namespace unidiff::experiments {

/// Learning rate, decay and EMA settings; InputError naming `prefix` + the flag otherwise.
void validate_optim(const OptimConfig& optim, const std::string& prefix = "");

/// Refuses to clobber a finished run (a `finished_file` in it, unless `overwrite`; "" = no check),
/// then creates the run directory with config.flags (`resolved_flags`) and, when `fresh`, an
/// empty metrics.jsonl (a resumed run appends to it). Rank 0 only.
void prepare_run_dir(const std::string& run_dir, const std::string& resolved_flags, bool overwrite,
                     const std::string& finished_file = "model.h5", bool fresh = true);

/// Logs (rank 0) that the run stopped after `step` on `signal` (0: --train_stop_at) and how to
/// resume it.
void log_stop(int64_t step, int signal);

/// A step rate for progress lines: "135 steps/s", "2.4 steps/s", or for slow steps "2.31 s/step".
std::string format_rate(double steps_per_second);

}  // namespace unidiff::experiments
