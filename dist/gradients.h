// Replica helpers: the start-of-run broadcast of parameters and a divergence check. Gradient
// averaging lives in dist/reducer.h.
#pragma once

#include <torch/types.h>

#include <vector>

#include "dist/communicator.h"

namespace unidiff::dist {

/// Makes every rank's tensors equal to root's (parameters and buffers at start).
void broadcast_tensors(const std::vector<torch::Tensor>& tensors, Communicator& comm, int root = 0);

/// Largest absolute difference of `tensors` between this rank and rank 0 (0 on rank 0's view
/// too): a cheap check that replicas agree. Collective.
double max_divergence(const std::vector<torch::Tensor>& tensors, Communicator& comm);

}  // namespace unidiff::dist
