// The collective watchdog: no rank waits forever for a rank that stalled. MPI
// collectives have no timeout of their own; every MPI collective of
// dist/communicator.cpp registers itself here while it waits, and a thread per
// rank (started by dist::init when the job has several ranks) ends the job once
// one has waited longer than the collective timeout (--dist_timeout), with a
// message naming the collective, its communicator and the ranks that did not
// arrive.
//
// How the ranks that did not arrive are found: the same thread answers, every
// 200 ms, a question any other rank may ask ("where are you?") on a
// communicator of its own. A rank that timed out asks every other rank and
// waits a few seconds: a rank inside the same collective (same communicator,
// same sequence number) has arrived; any other answer (computing, or in another
// collective) is printed as it came; no answer means the rank is stopped, hung
// or dead. The job then ends with exit 1 (MPI_Abort). Without
// MPI_THREAD_MULTIPLE nobody can be asked: the message says so.
//
// NCCL collectives (dist/nccl_communicator.cpp) have their own host-side
// timeout, set from the same value.
#pragma once

#include <cstdint>
#include <string>

namespace unidiff::dist {

/// The collective timeout in seconds (0: wait forever). Default 1800 s. Any
/// rank may set it; every rank of a job should set the same value (the training
/// flag --dist_timeout does).
void set_collective_timeout(double seconds);
double collective_timeout();

/// While alive, marks the calling thread as waiting in collective `op` (number
/// `seq` of the communicator `comm_id`, called `label` in messages, `count`
/// elements). Cheap: one mutex.
class WatchedCollective {
 public:
  WatchedCollective(int64_t comm_id, const std::string &label, const char *op, int64_t seq, int64_t count);
  ~WatchedCollective();
  WatchedCollective(const WatchedCollective &) = delete;
  WatchedCollective &operator=(const WatchedCollective &) = delete;

 private:
  int slot_;
};

namespace detail {
/// Started by dist::init when the job has several ranks (a collective call over
/// MPI_COMM_WORLD), stopped by dist::finalize before MPI_Finalize.
void start_watchdog();
void stop_watchdog();
}  // namespace detail

}  // namespace unidiff::dist
