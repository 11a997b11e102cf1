// A job whose last rank is late to a collective: `stall_probe TIMEOUT SLEEP`
// sets the collective timeout, runs one all-reduce together, then the last rank
// computes (sleeps) SLEEP seconds before the second all-reduce. With SLEEP >
// TIMEOUT the watchdog must end the job naming the late rank; otherwise (or
// with TIMEOUT 0, no timeout) the job finishes and prints "stall_probe: done".
#include <torch/types.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "dist/communicator.h"
#include "dist/job.h"
#include "dist/watchdog.h"
#include "dist/world.h"

int main(int argc, char **argv) {
  unidiff::dist::init(&argc, &argv);
  if (argc != 3) {
    std::fprintf(stderr, "usage: stall_probe TIMEOUT_S SLEEP_S\n");
    return 2;
  }
  const double timeout = std::atof(argv[1]);
  const double sleep = std::atof(argv[2]);
  const int code = unidiff::dist::run_guarded([&] {
    unidiff::dist::set_collective_timeout(timeout);
    auto comm = unidiff::dist::make_world_communicator();
    torch::Tensor t = torch::ones({4});
    comm->all_reduce(t);
    if (comm->rank() == comm->size() - 1) std::this_thread::sleep_for(std::chrono::duration<double>(sleep));
    comm->all_reduce(t);
    if (comm->rank() == 0) std::printf("stall_probe: done, sum %g\n", t[0].item<double>());
    return 0;
  });
  unidiff::dist::finalize();
  return code;
}
