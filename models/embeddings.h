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

/// The general form (diffusers' get_timestep_embedding): f_i = 10000^(-i / (h - shift)), [sin, cos]
/// or with `flip` [cos, sin]. shift 1, no flip is ddpm_timestep_embedding (bit for bit); shift 0 is
/// sinusoidal_embedding's frequencies; diffusers' UNet2DModel default is shift 0 with flip.
torch::Tensor timestep_embedding(const torch::Tensor& t, int64_t dim, bool flip, double shift);

}  // namespace unidiff::models
