// Distances between sample sets: sliced Wasserstein and the maximum mean discrepancy. Pure tensor
// functions, float64 inside.
#pragma once

#include <torch/types.h>

#include <cstdint>

namespace unidiff::experiments {

/// Sliced 2-Wasserstein distance: sqrt(mean over directions theta of W2^2(x theta, y theta)),
/// directions uniform on the sphere (keyed by `seed`), the 1-D W2 between empirical quantile
/// functions on max(n, m) levels. x [n, D], y [m, D].
double sliced_wasserstein(const torch::Tensor& x, const torch::Tensor& y, int64_t projections,
                          uint32_t seed);

/// Unbiased MMD^2 with the Gaussian kernel k(a, b) = exp(-|a - b|^2 / (2 h^2)). x [n, D], y [m, D].
double mmd2_rbf(const torch::Tensor& x, const torch::Tensor& y, double bandwidth);

/// Median of the pairwise distances within x (the "median heuristic" bandwidth), on at most
/// 2000 points.
double median_distance(const torch::Tensor& x);

}  // namespace unidiff::experiments
