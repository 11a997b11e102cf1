// Synthetic 2-D distributions for toy experiments: moons, swissroll, 8gaussians, checkerboard,
// and the standard normal `gaussian` as a baseline.
// Sample i is a pure function of (seed, i), so a larger draw extends a smaller one.
#pragma once

#include <torch/types.h>

#include <string>
#include <vector>

namespace unidiff::data {

/// Names accepted by `make_toy`, in a fixed order.
const std::vector<std::string>& toy_names();

/// n samples of the named distribution: float32 [n, 2]. Unknown names throw InputError listing
/// the known ones.
torch::Tensor make_toy(const std::string& name, int64_t n, uint32_t seed);

}  // namespace unidiff::data
