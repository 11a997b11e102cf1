// The process's place in the job: MPI initialisation, rank, world size, ranks on this host, the
// device this rank computes on, and a job-wide abort. The only place that knows the rank; other
// folders ask these functions.
#pragma once

#include <torch/types.h>

#include <string>

namespace unidiff::dist {

/// Initialises MPI (once; later calls do nothing) and records this rank's place. Works without
/// mpirun as a one-rank job.
void init(int* argc, char*** argv);
/// Finalises MPI if `init` started it.
void finalize();
bool is_initialized();

int rank();         ///< this rank in the world, 0 when MPI is not initialised
int world_size();   ///< ranks in the world, 1 when MPI is not initialised
int local_rank();   ///< this rank among the ranks on its host
int local_size();   ///< ranks on this host
bool is_main();     ///< rank() == 0
std::string hostname();

/// The device of this rank: cuda:local_rank when CUDA is usable (and `allow_cuda`), else CPU.
torch::Device select_device(bool allow_cuda = true);

/// Sets LibTorch's intra-op threads: `threads` when positive, else OMP_NUM_THREADS when set to a
/// positive number, else max(1, cores / local_size) so that the ranks on one host share its
/// cores. Returns the number set.
int configure_threads(int threads = 0);

/// Ends the whole job with `code` from any rank: MPI_Abort when several ranks run (so no rank
/// hangs in a collective), plain exit otherwise.
[[noreturn]] void abort_job(int code);

}  // namespace unidiff::dist
