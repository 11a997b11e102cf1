// Analytic oracle: a Gaussian mixture with diagonal covariances, p(x0) = sum_k w_k N(m_k, diag(s_k^2)).
// Under x_t = alpha x0 + sigma eps every quantity is closed form: x_t | k ~ N(alpha m_k,
// diag(alpha^2 s_k^2 + sigma^2)), so E[x0 | x_t] (hence eps and the score) is exact under any
// schedule. With one component the probability-flow ODE map between two times is closed form
// too (the standardised coordinate (x_t - alpha m) / sqrt(alpha^2 s^2 + sigma^2) is constant along
// it), which gives exact consistency functions.
// File format (HDF5): /weights [K], /means [K, D], /stds [K, D].
#pragma once

#include <torch/types.h>

#include <filesystem>

namespace unidiff::models {

struct GaussianMixture {
  torch::Tensor weights;  ///< float64 [K], sums to 1
  torch::Tensor means;    ///< float64 [K, D]
  torch::Tensor stds;     ///< float64 [K, D], > 0

  /// Validates shapes and values; throws InputError naming the problem.
  GaussianMixture(torch::Tensor weights, torch::Tensor means, torch::Tensor stds);
  static GaussianMixture load(const std::filesystem::path& path);
  void save(const std::filesystem::path& path) const;

  int64_t components() const { return weights.size(0); }
  int64_t dim() const { return means.size(1); }

  /// Exact samples, sample i a pure function of (seed, i): float32 [n, D].
  torch::Tensor sample(int64_t n, uint32_t seed) const;
  /// E[x0 | x_t] for x_t [B, D], alpha and sigma scalars or [B] (float64 inside; returns x's dtype).
  torch::Tensor posterior_mean(const torch::Tensor& x_t, const torch::Tensor& alpha,
                               const torch::Tensor& sigma) const;
  /// One component only: the probability-flow ODE map of x at (alpha, sigma) to (alpha_to,
  /// sigma_to): alpha_to m + (x - alpha m) sqrt(alpha_to^2 s^2 + sigma_to^2) / sqrt(alpha^2 s^2 + sigma^2).
  torch::Tensor ode_map(const torch::Tensor& x, double alpha, double sigma, double alpha_to,
                        double sigma_to) const;
};

}  // namespace unidiff::models
