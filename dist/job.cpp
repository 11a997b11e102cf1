#include "dist/job.h"

#include <c10/util/Exception.h>

#include <cstdio>
#include <string>

#include "core/error.h"
#include "dist/signals.h"
#include "dist/world.h"

namespace unidiff::dist {
namespace {

/// Prints the error; `first_line_only` cuts library messages (c10's carry backtraces) while our
/// own bad-input messages may list several problems, one per line.
void report(std::string line, bool first_line_only) {
  if (const auto nl = line.find('\n'); first_line_only && nl != std::string::npos) {
    line = line.substr(0, nl);
  }
  if (world_size() > 1) {
    std::fprintf(stderr, "unidiff [rank %d]: error: %s\n", rank(), line.c_str());
  } else {
    std::fprintf(stderr, "unidiff: error: %s\n", line.c_str());
  }
  std::fflush(stderr);
}

}  // namespace

int run_guarded(const std::function<int()>& work) {
  int code = kExitOk;
  try {
    code = work();
  } catch (const InputError& e) {
    report(e.what(), false);
    code = kExitBadInput;
  } catch (const c10::Error& e) {
    report(e.what_without_backtrace(), true);
    code = kExitFailure;
  } catch (const std::exception& e) {
    report(e.what(), true);
    code = kExitFailure;
  }
  // A requested stop (a signal, --train_stop_at) is decided by every rank together (one
  // all-reduce): each rank returns 75 through MPI_Finalize, with no abort and no abort banner.
  if (code != kExitOk && code != kExitRequeue && world_size() > 1) abort_job(code);
  return code;
}

}  // namespace unidiff::dist
