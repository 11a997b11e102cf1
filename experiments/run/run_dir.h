// The run directory is unidiff's: marked when created, refused when it is someone else's, locked
// for a job's life, and cleaned (--overwrite) of only what unidiff wrote.
//
// The marker is RUN_DIR/.unidiff-run. A directory is taken when it does not exist, is empty, holds
// the marker, or is a run directory written before markers existed (config.flags beside a
// checkpoints/ folder, model.h5 or metrics.jsonl); anything else (a home directory, `/`, a data
// folder) is refused with exit 2 before anything is written. The lock is an exclusive flock(2) on
// RUN_DIR/.unidiff-lock taken by rank 0 (the kernel drops it when the job dies, however it dies);
// the file says who holds it (host, pid, start time), and a second job on the directory is
// refused naming that holder.
#pragma once

#include <string>

namespace unidiff::experiments {

inline constexpr const char* kRunMarker = ".unidiff-run";
inline constexpr const char* kRunLock = ".unidiff-lock";

/// Refuses (InputError) a --run_dir that exists and is not unidiff's (see above). Reads only.
void check_run_dir_owned(const std::string& run_dir);

/// Writes the marker into an existing run directory (rank 0, when it creates or adopts one).
void mark_run_dir(const std::string& run_dir);

/// --overwrite: removes what unidiff wrote under RUN_DIR/checkpoints (step-* folders, `latest` and
/// its temporary files) and nothing else.
void remove_checkpoints(const std::string& run_dir);

/// An exclusive lock on a run directory for this object's (the job's) life.
class RunDirLock {
 public:
  RunDirLock() = default;
  ~RunDirLock();
  RunDirLock(const RunDirLock&) = delete;
  RunDirLock& operator=(const RunDirLock&) = delete;
  /// Takes the lock of an existing `run_dir`; returns "" or who holds it ("host H, pid P, since T").
  std::string acquire(const std::string& run_dir);
  bool held() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

}  // namespace unidiff::experiments
