// CUDA kernels of the fused GroupNorm + SiLU (models/group_norm_act_block.h). Only raw pointers,
// the shape and a stream handle cross this boundary; models/group_norm_act.cpp dispatches here for
// CUDA tensors when the build has the kernels (UNIDIFF_WITH_CUDA_KERNELS).
#pragma once

#include "models/group_norm_act_block.h"

namespace unidiff::models::gn::cuda {

/// The element type of x, y, dy, dx.
enum class Dtype { kFloat, kBFloat16, kHalf };

/// One block per (n, g): y, mean, rstd from x (device pointers; `stream` a cudaStream_t).
void launch_forward(Dtype dtype, const Shape& s, const void* x, const float* bias, const float* gamma,
                    const float* beta, void* y, float* mean, float* rstd, void* stream);
/// dx, the per-(n, c) sums A and B, and dbias (null without a bias).
void launch_backward(Dtype dtype, const Shape& s, const void* dy, const void* x, const float* bias,
                     const float* gamma, const float* beta, const float* mean, const float* rstd, void* dx,
                     float* a_sum, float* b_sum, float* dbias, void* stream);

}  // namespace unidiff::models::gn::cuda
