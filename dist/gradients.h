// Data-parallel synchronisation of a module's parameters and gradients. The simple correct
// version: one flat buffer per dtype, one all-reduce per step (no per-parameter loop). Bucketing
// overlapped with backward replaces the internals later; the interface stays.
#pragma once

#include <torch/types.h>

#include <vector>

#include "dist/communicator.h"

namespace unidiff::dist {

/// Makes every rank's tensors equal to root's (parameters and buffers at start).
void broadcast_tensors(const std::vector<torch::Tensor>& tensors, Communicator& comm, int root = 0);

/// Averages gradients over the ranks of `comm` before an optimizer step. Each rank's gradient
/// must be the mean over its own equal share of the global batch, so the average is the gradient
/// of the global batch. Parameters without a gradient count as zero.
class GradientAverager {
 public:
  GradientAverager(std::vector<torch::Tensor> params, Communicator& comm);
  /// All-reduces and divides by the group size; call after backward, before the step.
  void finalize();

 private:
  std::vector<torch::Tensor> params_;
  Communicator& comm_;
};

/// Largest absolute difference of `tensors` between this rank and rank 0 (0 on rank 0's view
/// too): a cheap check that replicas agree. Collective.
double max_divergence(const std::vector<torch::Tensor>& tensors, Communicator& comm);

}  // namespace unidiff::dist
