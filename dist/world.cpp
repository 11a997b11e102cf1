// MPI world set-up (dist/world.h). MPI is initialised only when a launcher (mpirun, srun) started
// this process; a plain `unidiff ...` runs as a one-rank job without touching MPI, so single-process
// commands start fast and work where no MPI daemon can run.
#include "dist/world.h"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <thread>

#include <torch/cuda.h>

#include "core/log.h"
#include "dist/mpi_check.h"
#include "dist/watchdog.h"

namespace unidiff::dist {
namespace {

struct World {
  bool initialized = false;
  bool we_initialized = false;
  int rank = 0;
  int size = 1;
  int local_rank = 0;
  int local_size = 1;
};

World& world() {
  static World w;
  return w;
}

bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"}) {
    if (std::getenv(v) != nullptr) return true;
  }
  return false;
}

}  // namespace

void init(int* argc, char*** argv) {
  World& w = world();
  if (w.initialized) return;
  w.initialized = true;
  int already = 0;
  MPI_CHECK(MPI_Initialized(&already));
  if (!already) {
    if (!launched_by_mpi()) return;  // one rank, no MPI
    int provided = 0;
    // MULTIPLE: each trained model group's reducer runs its collectives on its own thread and
    // communicator while the main thread computes the backward pass, and two groups trained by
    // one backward pass (DMD2's fake score and discriminator) run theirs at the same time. With
    // SERIALIZED those concurrent calls hung now and then (tests/dist/framework_test.cpp). A
    // library that cannot give MULTIPLE gets no reducer threads (supports_background_thread):
    // the collectives then run on the main thread after backward.
    MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided));
    w.we_initialized = true;
  }
  MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &w.rank));
  MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &w.size));
  MPI_Comm local;
  MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, w.rank, MPI_INFO_NULL, &local));
  MPI_CHECK(MPI_Comm_rank(local, &w.local_rank));
  MPI_CHECK(MPI_Comm_size(local, &w.local_size));
  MPI_CHECK(MPI_Comm_free(&local));
  log::set_rank(w.rank);
  if (w.size > 1) detail::start_watchdog();
}

void finalize() {
  World& w = world();
  if (w.initialized && w.size > 1 && is_initialized()) detail::stop_watchdog();
  if (w.we_initialized) {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
    w.we_initialized = false;
  }
}

bool is_initialized() {
  int flag = 0;
  MPI_Initialized(&flag);
  int finalized = 0;
  MPI_Finalized(&finalized);
  return flag && !finalized;
}

int rank() { return world().rank; }
int world_size() { return world().size; }
int local_rank() { return world().local_rank; }
int local_size() { return world().local_size; }
bool is_main() { return world().rank == 0; }

std::string hostname() {
  char buf[256] = {0};
  gethostname(buf, sizeof(buf) - 1);
  return buf;
}

torch::Device select_device(bool allow_cuda) {
  if (allow_cuda && torch::cuda::is_available()) {
    const int count = static_cast<int>(torch::cuda::device_count());
    return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(local_rank() % count));
  }
  return torch::Device(torch::kCPU);
}

int configure_threads(int threads) {
  if (threads <= 0) {
    // OMP_NUM_THREADS, where set to a positive number, is the threads of this process (as for
    // LibTorch and OpenMP programs generally); a launcher exports it with `-x OMP_NUM_THREADS=n`.
    if (const char* env = std::getenv("OMP_NUM_THREADS")) {
      char* end = nullptr;
      const long n = std::strtol(env, &end, 10);
      if (end != env && *end == '\0' && n > 0) threads = static_cast<int>(std::min<long>(n, 4096));
    }
  }
  if (threads <= 0) {
    cpu_set_t set;
    int cores = static_cast<int>(std::thread::hardware_concurrency());
    if (sched_getaffinity(0, sizeof(set), &set) == 0) cores = CPU_COUNT(&set);
    threads = std::max(1, cores / std::max(1, local_size()));
  }
  torch::set_num_threads(threads);
  return threads;
}

void abort_job(int code) {
  if (world().size > 1 && is_initialized()) MPI_Abort(MPI_COMM_WORLD, code);
  std::exit(code);
}

}  // namespace unidiff::dist
