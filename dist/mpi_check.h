// MPI_CHECK: every MPI call goes through it; a failure throws with the call, place and MPI's text.
// Internal to dist/.
#pragma once

#include <mpi.h>

#include <stdexcept>
#include <string>

namespace unidiff::dist::detail {

[[noreturn]] inline void mpi_fail(int code, const char* expr, const char* file, int line) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, text, &len);
  throw std::runtime_error(std::string("MPI call ") + expr + " failed at " + file + ":" +
                           std::to_string(line) + ": " + std::string(text, len));
}

}  // namespace unidiff::dist::detail

#define MPI_CHECK(expr)                                                            \
  do {                                                                             \
    const int mpi_check_rc_ = (expr);                                              \
    if (mpi_check_rc_ != MPI_SUCCESS)                                              \
      ::unidiff::dist::detail::mpi_fail(mpi_check_rc_, #expr, __FILE__, __LINE__); \
  } while (0)
