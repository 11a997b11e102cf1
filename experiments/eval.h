// `unidiff eval`: distances between a samples file and a reference dataset, as one JSON line.
#pragma once

#include <string>

#include "experiments/config.h"

namespace unidiff::experiments {

/// Returns the JSON line (also what the launcher prints).
std::string run_eval(const EvalConfig& config);

}  // namespace unidiff::experiments
