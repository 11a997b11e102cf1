// GroupNorm with an optional per-(sample, channel) bias added before it and SiLU after it, the
// "norm -> activation" pair of every UNet residual block, as one fused operation:
//
//   group_norm_act(x, bias, gamma, beta, G, eps, silu) = act(GroupNorm_G(x + bias[:, :, None, None]))
//
// The composite path (ATen's group_norm, an add and a silu) is what the networks run by default.
// The fused path (models/group_norm_act_block.h) reads x once for the statistics and once to write
// the output, keeps x's dtype (bfloat16 under autocast: no float32 copies of the activations, which
// autocast's float32 group_norm makes), reads x and dy twice in the backward pass, and needs only x
// saved for it. On CUDA it runs the kernels (models/group_norm_act_cuda.cu); on the CPU it runs the
// same block program thread after thread, which is slow and exists to check that program.
#pragma once

#include <torch/types.h>

namespace unidiff::models {

/// Whether `t` carries a forward-mode tangent (a dual tensor of forward AD, level 0): the fused
/// autograd functions (this one, the CUDA keyed dropout) have no forward-mode rule, so such inputs
/// take the composite operations, which give the same values.
bool has_forward_grad(const torch::Tensor& t);

/// Whether the fused path can run on `device`: the CPU always (emulated); CUDA when the build
/// compiled the kernels.
bool fused_group_norm_available(c10::DeviceType device);

/// What `--fused_group_norm` needs (InputError otherwise, before any work): a CUDA device and a
/// build with the kernels. The CPU's emulation is a check of the kernels' code, not a fast path.
void check_fused_group_norm(torch::Device device);

/// act(GroupNorm(x + bias)) for x [N, C, ...] with C divisible by `groups`; bias [N, C] or
/// undefined; gamma, beta [C]. `fused` picks the fused path for 4-D float32/bfloat16/float16 x
/// (other inputs, and dual tensors of forward-mode AD, take the composite path); its output has
/// x's dtype and memory format.
torch::Tensor group_norm_act(const torch::Tensor& x, const torch::Tensor& bias, const torch::Tensor& gamma,
                             const torch::Tensor& beta, int64_t groups, double eps, bool silu, bool fused);

}  // namespace unidiff::models
