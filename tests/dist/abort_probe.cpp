// A job in which only the last rank fails while the others wait in a collective: run_guarded must
// end the whole job with the failing rank's exit code and message instead of hanging.
#include <torch/types.h>

#include "core/error.h"
#include "dist/communicator.h"
#include "dist/job.h"
#include "dist/world.h"

int main(int argc, char** argv) {
  unidiff::dist::init(&argc, &argv);
  const int code = unidiff::dist::run_guarded([] {
    auto comm = unidiff::dist::make_world_communicator();
    if (comm->rank() == comm->size() - 1) UD_FAIL_INPUT("simulated bad input on the last rank");
    torch::Tensor t = torch::ones({1});
    comm->all_reduce(t);  // never completes: the last rank does not join
    return 0;
  });
  unidiff::dist::finalize();
  return code;
}
