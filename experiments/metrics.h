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

/// Frechet distance between Gaussians N(mu1, S1) and N(mu2, S2):
/// ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)), the trace of the root taken as the sum of the
/// square roots of the eigenvalues of sqrt(S1) S2 sqrt(S1) (symmetric, so eigh applies). float64.
double frechet_distance(const torch::Tensor& mu1, const torch::Tensor& s1, const torch::Tensor& mu2,
                        const torch::Tensor& s2);
/// The same between the Gaussians fitted to two feature sets x [n, F], y [m, F] (unbiased
/// covariances; n, m >= 2).
double frechet_distance(const torch::Tensor& x, const torch::Tensor& y);

/// Median of the pairwise distances within x (the "median heuristic" bandwidth), on at most
/// 2000 points.
double median_distance(const torch::Tensor& x);

}  // namespace unidiff::experiments
