// Time embeddings shared by the networks.
#pragma once

#include <torch/types.h>

namespace unidiff::models {

/// Sinusoidal embedding of (Vaswani et al.; DDPM's UNet): for t [B] (any real scale, e.g. the
/// integer DDPM step) returns [B, dim] = [sin(t * f_0..f_{h-1}), cos(t * f_0..f_{h-1})] with
/// h = dim / 2 and f_i = max_period^(-i / h). dim must be even.
torch::Tensor sinusoidal_embedding(const torch::Tensor& t, int64_t dim, double max_period = 10000);

/// The DDPM UNet's variant (Ho et al. 2020, after tensor2tensor): f_i = 10000^(-i / (h - 1)), so
/// the last frequency is exactly 1e-4. [B, dim] = [sin, cos]; dim even and >= 4.
torch::Tensor ddpm_timestep_embedding(const torch::Tensor& t, int64_t dim);

}  // namespace unidiff::models
