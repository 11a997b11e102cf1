// models/group_norm_act_cuda.h: the phases of models/group_norm_act_block.h with a barrier
// between them, one block per (sample, group).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "models/group_norm_act_cuda.h"

namespace unidiff::models::gn::cuda {
namespace {

template <typename T>
__global__ void forward_kernel(Forward<T> f) {
  extern __shared__ float smem[];
  Welford* sh = reinterpret_cast<Welford*>(smem);
  const int64_t t = threadIdx.x, block = blockIdx.x;
  f.stats(block, t, sh);
  __syncthreads();
  for (int64_t stride = first_stride(f.s.group_threads()); stride > 0; stride >>= 1) {
    f.reduce(t, stride, sh);
    __syncthreads();
  }
  f.apply(block, t, sh);
}

template <typename T>
__global__ void backward_kernel(Backward<T> b) {
  extern __shared__ float smem[];
  float* sh = smem;
  float* shc = smem + 3 * b.s.threads;
  const int64_t t = threadIdx.x, block = blockIdx.x;
  b.partial_sums(block, t, sh);
  __syncthreads();
  b.channel_sums(block, t, sh, shc);
  __syncthreads();
  b.group_sums(block, t, shc);
  __syncthreads();
  b.input_grads(block, t, shc);
}

void check_launch(const char* what) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string("CUDA launch of ") + what + " failed: " + cudaGetErrorString(err));
  }
}

void check_shape(const Shape& s) {
  if (s.threads < 1 || s.threads > kMaxThreads || s.d * s.groups != s.c || s.groups % s.k != 0) {
    throw std::runtime_error("fused group norm: unsupported shape (C " + std::to_string(s.c) + ", groups " +
                             std::to_string(s.groups) + ")");
  }
}

template <typename T>
void forward_as(const Shape& s, const void* x, const float* bias, const float* gamma, const float* beta,
                void* y, float* mean, float* rstd, cudaStream_t stream) {
  const Forward<T> f{s, static_cast<const T*>(x), bias, gamma, beta, static_cast<T*>(y), mean, rstd};
  const size_t shared = sizeof(Welford) * static_cast<size_t>(s.threads);
  forward_kernel<T><<<static_cast<unsigned>(s.blocks()), static_cast<unsigned>(s.threads), shared, stream>>>(f);
  check_launch("the fused group norm forward kernel");
}

template <typename T>
void backward_as(const Shape& s, const void* dy, const void* x, const float* bias, const float* gamma,
                 const float* beta, const float* mean, const float* rstd, void* dx, float* a_sum, float* b_sum,
                 float* dbias, cudaStream_t stream) {
  const Backward<T> b{s,    static_cast<const T*>(dy), static_cast<const T*>(x), bias, gamma, beta, mean, rstd,
                      static_cast<T*>(dx), a_sum, b_sum, dbias};
  const size_t shared = sizeof(float) * static_cast<size_t>(backward_shared_floats(s));
  backward_kernel<T><<<static_cast<unsigned>(s.blocks()), static_cast<unsigned>(s.threads), shared, stream>>>(b);
  check_launch("the fused group norm backward kernel");
}

}  // namespace

void launch_forward(Dtype dtype, const Shape& s, const void* x, const float* bias, const float* gamma,
                    const float* beta, void* y, float* mean, float* rstd, void* stream) {
  check_shape(s);
  if (s.n == 0) return;
  const auto st = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case Dtype::kFloat: return forward_as<float>(s, x, bias, gamma, beta, y, mean, rstd, st);
    case Dtype::kBFloat16: return forward_as<__nv_bfloat16>(s, x, bias, gamma, beta, y, mean, rstd, st);
    case Dtype::kHalf: return forward_as<__half>(s, x, bias, gamma, beta, y, mean, rstd, st);
  }
}

void launch_backward(Dtype dtype, const Shape& s, const void* dy, const void* x, const float* bias,
                     const float* gamma, const float* beta, const float* mean, const float* rstd, void* dx,
                     float* a_sum, float* b_sum, float* dbias, void* stream) {
  check_shape(s);
  if (s.n == 0) return;
  const auto st = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case Dtype::kFloat:
      return backward_as<float>(s, dy, x, bias, gamma, beta, mean, rstd, dx, a_sum, b_sum, dbias, st);
    case Dtype::kBFloat16:
      return backward_as<__nv_bfloat16>(s, dy, x, bias, gamma, beta, mean, rstd, dx, a_sum, b_sum, dbias, st);
    case Dtype::kHalf:
      return backward_as<__half>(s, dy, x, bias, gamma, beta, mean, rstd, dx, a_sum, b_sum, dbias, st);
  }
}

}  // namespace unidiff::models::gn::cuda
