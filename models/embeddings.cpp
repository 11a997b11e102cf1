#include "models/embeddings.h"

#include <cmath>

#include "core/error.h"

namespace unidiff::models {

torch::Tensor sinusoidal_embedding(const torch::Tensor& t, int64_t dim, double max_period) {
  UD_ASSERT(dim % 2 == 0, "embedding dim must be even, got ", dim);
  const int64_t half = dim / 2;
  // float32, or float64 for a float64 t (derivative checks in double precision).
  const auto dtype = t.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
  const torch::Tensor freqs =
      torch::exp(-std::log(max_period) *
                 torch::arange(half, torch::TensorOptions().dtype(dtype).device(t.device())) /
                 static_cast<double>(half));
  const torch::Tensor args = t.to(dtype).unsqueeze(1) * freqs.unsqueeze(0);
  return torch::cat({torch::sin(args), torch::cos(args)}, 1);
}

torch::Tensor ddpm_timestep_embedding(const torch::Tensor& t, int64_t dim) {
  return timestep_embedding(t, dim, /*flip=*/false, /*shift=*/1);
}

torch::Tensor timestep_embedding(const torch::Tensor& t, int64_t dim, bool flip, double shift) {
  UD_ASSERT(dim % 2 == 0 && dim >= 4, "embedding dim must be even and >= 4, got ", dim);
  const int64_t half = dim / 2;
  UD_ASSERT(static_cast<double>(half) != shift, "embedding frequency shift ", shift, " equals half the dim");
  const torch::Tensor freqs =
      torch::exp(-std::log(10000.0) *
                 torch::arange(half, torch::TensorOptions().dtype(torch::kFloat32).device(t.device())) /
                 (static_cast<double>(half) - shift));
  const torch::Tensor args = t.to(torch::kFloat32).unsqueeze(1) * freqs.unsqueeze(0);
  return flip ? torch::cat({torch::cos(args), torch::sin(args)}, 1) : torch::cat({torch::sin(args), torch::cos(args)}, 1);
}

}  // namespace unidiff::models
