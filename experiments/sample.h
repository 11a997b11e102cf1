// `unidiff sample`: draws samples from a trained model (or later an analytic one) with a chosen
// sampler, writes them as an HDF5 dataset, and a PNG beside it (scatter plot for 2-D data).
#pragma once

#include <torch/types.h>

#include "experiments/config.h"

namespace unidiff::experiments {

/// Returns the samples [num, ...] (CPU float32) after writing them to config.out (if set).
/// Sample i uses noise keyed by (seed, i): the same samples whatever --batch is.
torch::Tensor run_sample(const SampleConfig& config);

}  // namespace unidiff::experiments
