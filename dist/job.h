// Running a rank's work so that one rank's failure ends the whole job loudly: the exception is
// reported with the rank, mapped to an exit code (InputError -> 2, anything else -> 1), and with
// several ranks the job is aborted (MPI_Abort) so no rank waits forever in a collective.
#pragma once

#include <functional>

namespace unidiff::dist {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitBadInput = 2;

/// Runs `work` (which returns an exit code). On an exception: prints "unidiff [rank r]: error: ..."
/// to stderr and, when the job has several ranks, aborts every rank with the code. Returns the
/// code for a one-rank job, and kExitRequeue (a stop every rank agreed on) from every rank.
int run_guarded(const std::function<int()>& work);

}  // namespace unidiff::dist
