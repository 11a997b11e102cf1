#include "models/mlp.h"

#include <torch/nn/functional/activation.h>

#include <numbers>

#include "core/error.h"
#include "models/embeddings.h"

namespace unidiff::models {

MlpImpl::MlpImpl(const MlpOptions& opts) : options(opts) {
  UD_ASSERT(opts.data_dim() > 0 && opts.hidden() > 0 && opts.layers() > 0 && opts.time_dim() % 2 == 0 &&
                opts.fourier() >= 0 && opts.fourier() <= 16,
            "bad MLP options");
  time_in_ = register_module("time_in", torch::nn::Linear(opts.time_dim(), opts.hidden()));
  time_hidden_ = register_module("time_hidden", torch::nn::Linear(opts.hidden(), opts.hidden()));
  input_ = register_module("input", torch::nn::Linear(opts.data_dim() * (1 + 2 * opts.fourier()), opts.hidden()));
  // The Fourier frequencies pi 2^k, k = 0..K-1, made once (a buffer, so they follow the module's device).
  if (opts.fourier() > 0) {
    freqs_ = register_buffer("fourier_freqs",
                             std::numbers::pi * torch::pow(2.0, torch::arange(opts.fourier(), torch::kFloat32)));
  }
  for (int64_t i = 0; i < opts.layers(); ++i) {
    layers_->push_back(torch::nn::Linear(opts.hidden(), opts.hidden()));
    time_proj_->push_back(torch::nn::Linear(opts.hidden(), opts.hidden()));
  }
  register_module("layers", layers_);
  register_module("time_proj", time_proj_);
  output_ = register_module("output", torch::nn::Linear(opts.hidden(), opts.data_dim()));
}

torch::Tensor MlpImpl::input_features(const torch::Tensor& x) const {
  if (options.fourier() == 0) return x;
  // The same frequencies for every coordinate: [B, D] -> [B, D (1 + 2K)].
  const torch::Tensor args = (x.unsqueeze(2) * freqs_).flatten(1);
  return torch::cat({x, torch::sin(args), torch::cos(args)}, 1);
}

torch::Tensor MlpImpl::forward(const torch::Tensor& x, const torch::Tensor& t) { return output_->forward(trunk(x, t)); }

torch::Tensor MlpImpl::features(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& labels) {
  UD_CHECK_INPUT(!labels.defined(), "the mlp is unconditional: it takes no labels");
  return trunk(x, t);
}

torch::Tensor MlpImpl::trunk(const torch::Tensor& x, const torch::Tensor& t) {
  namespace F = torch::nn::functional;
  torch::Tensor temb = sinusoidal_embedding(t, options.time_dim());
  temb = time_hidden_->forward(F::silu(time_in_->forward(temb)));
  temb = F::silu(temb);
  torch::Tensor h = input_->forward(input_features(x));
  for (size_t i = 0; i < layers_->size(); ++i) {
    h = F::silu(layers_[i]->as<torch::nn::Linear>()->forward(h) +
                time_proj_[i]->as<torch::nn::Linear>()->forward(temb));
  }
  return h;
}

}  // namespace unidiff::models
