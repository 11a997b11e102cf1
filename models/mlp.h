// A time-conditioned MLP for vector data (toy 2-D sets, mixtures): the network of the toy recipes.
// It maps (x [B, D], t [B]) to [B, D]; what the output means (eps, x0, v, velocity) is the
// objective's business, not the network's.
#pragma once

#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include "models/network.h"

namespace unidiff::models {

struct MlpOptions {
  explicit MlpOptions(int64_t data_dim) : data_dim_(data_dim) {}
  /// Dimension D of one sample.
  TORCH_ARG(int64_t, data_dim);
  /// Width of the hidden layers.
  TORCH_ARG(int64_t, hidden) = 256;
  /// Number of hidden layers (each: linear, plus the projected time embedding, SiLU).
  TORCH_ARG(int64_t, layers) = 3;
  /// Size of the sinusoidal time embedding (even).
  TORCH_ARG(int64_t, time_dim) = 64;
  /// Fourier features of the input (Tancik et al. 2020): K > 0 feeds [x, sin(2^k pi x),
  /// cos(2^k pi x)] for k = 0..K-1 to the first layer instead of x, so the network can resolve
  /// detail finer than its smooth SiLU layers would (thin 2-D manifolds). 0: x alone.
  TORCH_ARG(int64_t, fourier) = 0;
};

class MlpImpl : public Network {
 public:
  explicit MlpImpl(const MlpOptions& options);
  /// x: [B, D]; t: [B] in the objective's model-time units. Returns [B, D].
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t) override;
  /// The last hidden layer's activations [B, hidden].
  torch::Tensor features(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& labels) override;
  int64_t feature_dim() const override { return options.hidden(); }

  MlpOptions options;

 private:
  /// Every layer but the output one.
  torch::Tensor trunk(const torch::Tensor& x, const torch::Tensor& t);
  /// The first layer's input: x, or x with its Fourier features.
  torch::Tensor input_features(const torch::Tensor& x) const;

  torch::nn::Linear time_in_{nullptr}, time_hidden_{nullptr}, input_{nullptr}, output_{nullptr};
  torch::nn::ModuleList layers_, time_proj_;
  torch::Tensor freqs_;  // buffer [K] when fourier > 0
};
TORCH_MODULE(Mlp);

}  // namespace unidiff::models
