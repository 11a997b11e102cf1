// Preemption: SIGTERM or SIGUSR1 (what Slurm and most schedulers send before killing a job) sets
// a flag instead of killing the process; the training loop polls it once per step, agrees on it
// over all ranks (one MAX all-reduce of one number), writes a checkpoint and exits with
// kExitRequeue so the scheduler can requeue the job.
#pragma once

namespace unidiff::dist {

/// EX_TEMPFAIL: "checkpointed after a stop signal; run the same command again to resume".
inline constexpr int kExitRequeue = 75;

/// Installs the handlers (idempotent).
void install_stop_signals();
/// Whether this process received SIGTERM or SIGUSR1 since install_stop_signals().
bool stop_signal_received();
/// The signal's number (0 when none).
int stop_signal_number();

}  // namespace unidiff::dist
