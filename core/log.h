// The logging facade: component-tagged messages ("[train] ...") on the job's rank 0, warnings and
// errors from every rank. Implemented with glog in log.cpp, which never includes LibTorch (c10 and
// glog both define LOG and CHECK), so any file may include this header.
#pragma once

#include <string>
#include <string_view>

namespace unidiff::log {

/// Sets up logging for this process. `rank` < 0 means "not known yet" (treated as rank 0).
void init(const char* argv0, int rank);

/// Records this process's rank once it is known (dist::init calls it).
void set_rank(int rank);

/// Informational message; printed by rank 0 only.
void info(std::string_view component, const std::string& message);
/// Printed by every rank, prefixed with the rank when the job has several.
void warn(std::string_view component, const std::string& message);
void error(std::string_view component, const std::string& message);

}  // namespace unidiff::log
