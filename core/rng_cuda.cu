// core/rng_cuda.h: one thread per output word (normals: per pair of words). Compiled with
// -fmad=false so no multiply-add is fused and every operation rounds as on the CPU.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <stdexcept>
#include <string>

#include "core/philox.h"
#include "core/rng_cuda.h"

namespace unidiff::rng::cuda {
namespace {

__device__ inline uint32_t resolve(StepWord s) {
  return s.counter == nullptr
             ? s.host
             : static_cast<uint32_t>((static_cast<uint64_t>(*s.counter) << s.shift) | s.low);
}

/// Word w of sample `index`'s stream at `step` (block w / 4, component w % 4), as fill_bits.
__device__ inline uint32_t word(uint32_t seed, uint32_t purpose, uint32_t step, uint64_t index,
                                int64_t w, uint32_t* second) {
  uint32_t ctr[4] = {static_cast<uint32_t>(w / 4), static_cast<uint32_t>(index),
                     static_cast<uint32_t>(index >> 32), step};
  philox4x32_10_inplace(ctr, seed, purpose);
  const int c = static_cast<int>(w % 4);
  if (second != nullptr) *second = ctr[c + 1];  // the pair (2p, 2p + 1) never straddles a block
  return ctr[c];
}

__global__ void normal_kernel(uint32_t seed, uint32_t purpose, StepWord key, const int64_t* idx,
                              int64_t batch, int64_t per, float* out) {
  const int64_t pairs = (per + 1) / 2;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= batch * pairs) return;
  const uint32_t step = resolve(key);
  const int64_t b = i / pairs, p = i % pairs;
  uint32_t bits2 = 0;
  const uint32_t bits1 = word(seed, purpose, step, static_cast<uint64_t>(idx[b]), 2 * p, &bits2);
  float z0 = 0, z1 = 0;
  box_muller(bits1, bits2, &z0, &z1);
  out[b * per + 2 * p] = z0;
  if (2 * p + 1 < per) out[b * per + 2 * p + 1] = z1;
}

__global__ void uniform_kernel(uint32_t seed, uint32_t purpose, StepWord key, const int64_t* idx,
                               int64_t batch, int64_t per, float* out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= batch * per) return;
  const uint32_t step = resolve(key);
  const int64_t b = i / per, j = i % per;
  out[i] = bits_to_unit_float(word(seed, purpose, step, static_cast<uint64_t>(idx[b]), j, nullptr));
}

__global__ void randint_kernel(uint32_t seed, uint32_t purpose, StepWord key, const int64_t* idx,
                               int64_t batch, uint64_t n, int64_t* out) {
  const int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= batch) return;
  const uint32_t step = resolve(key);
  out[b] = bits_to_below(word(seed, purpose, step, static_cast<uint64_t>(idx[b]), 0, nullptr), n);
}

/// Contiguous x: one thread per Philox block of 4 words (4 neighbouring elements). The product
/// rounds as ATen's x * mask * scale: x * keep is exact, then one rounding of * scale.
template <typename T>
__global__ void dropout_blocks_kernel(uint32_t seed, uint32_t purpose, StepWord key, const int64_t* idx,
                                      int64_t batch, int64_t per, float p, float scale, const T* x, T* out) {
  const int64_t blocks = (per + 3) / 4;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= batch * blocks) return;
  const int64_t b = i / blocks, q = i % blocks;
  const uint64_t index = static_cast<uint64_t>(idx[b]);
  uint32_t ctr[4] = {static_cast<uint32_t>(q), static_cast<uint32_t>(index), static_cast<uint32_t>(index >> 32),
                     resolve(key)};
  philox4x32_10_inplace(ctr, seed, purpose);
  for (int k = 0; k < 4; ++k) {
    const int64_t j = 4 * q + k;
    if (j >= per) break;
    const int64_t e = b * per + j;
    const float kept = static_cast<float>(x[e]) * (dropout_keep(ctr[k], p) ? 1.0f : 0.0f);
    out[e] = T(kept * scale);
  }
}

/// Channels-last x: one thread per element (its word found through logical_index).
template <typename T>
__global__ void dropout_elements_kernel(uint32_t seed, uint32_t purpose, StepWord key, const int64_t* idx,
                                        int64_t batch, int64_t per, int64_t channels, float p, float scale,
                                        const T* x, T* out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= batch * per) return;
  const int64_t b = i / per, j = logical_index(i % per, per, channels, true);
  const uint32_t bits = word(seed, purpose, resolve(key), static_cast<uint64_t>(idx[b]), j, nullptr);
  const float kept = static_cast<float>(x[i]) * (dropout_keep(bits, p) ? 1.0f : 0.0f);
  out[i] = T(kept * scale);
}

void check_launch(const char* what) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string("CUDA launch of ") + what + " failed: " +
                             cudaGetErrorString(err));
  }
}

constexpr int kThreads = 256;

unsigned blocks_for(int64_t n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }

template <typename T>
void dropout_as(uint32_t seed, uint32_t purpose, StepWord step, const int64_t* idx, int64_t batch, int64_t per,
                int64_t channels, bool channels_last, float p, float scale, const void* x, void* out,
                cudaStream_t stream) {
  const T* xt = static_cast<const T*>(x);
  T* ot = static_cast<T*>(out);
  if (channels_last) {
    dropout_elements_kernel<T><<<blocks_for(batch * per), kThreads, 0, stream>>>(seed, purpose, step, idx, batch,
                                                                                per, channels, p, scale, xt, ot);
  } else {
    dropout_blocks_kernel<T><<<blocks_for(batch * ((per + 3) / 4)), kThreads, 0, stream>>>(
        seed, purpose, step, idx, batch, per, p, scale, xt, ot);
  }
  check_launch("the keyed dropout kernel");
}

}  // namespace

void launch_normal(uint32_t seed, uint32_t purpose, StepWord step, const int64_t* idx,
                   int64_t batch, int64_t per, float* out, void* stream) {
  const int64_t n = batch * ((per + 1) / 2);
  if (n == 0) return;
  normal_kernel<<<blocks_for(n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      seed, purpose, step, idx, batch, per, out);
  check_launch("the keyed normal kernel");
}

void launch_uniform(uint32_t seed, uint32_t purpose, StepWord step, const int64_t* idx,
                    int64_t batch, int64_t per, float* out, void* stream) {
  const int64_t n = batch * per;
  if (n == 0) return;
  uniform_kernel<<<blocks_for(n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      seed, purpose, step, idx, batch, per, out);
  check_launch("the keyed uniform kernel");
}

void launch_randint(uint32_t seed, uint32_t purpose, StepWord step, const int64_t* idx,
                    int64_t batch, uint64_t n, int64_t* out, void* stream) {
  if (batch == 0) return;
  randint_kernel<<<blocks_for(batch), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      seed, purpose, step, idx, batch, n, out);
  check_launch("the keyed randint kernel");
}

void launch_dropout(uint32_t seed, uint32_t purpose, StepWord step, const int64_t* idx, int64_t batch,
                    int64_t per, int64_t channels, bool channels_last, float p, float scale, Elem elem,
                    const void* x, void* out, void* stream) {
  if (batch == 0 || per == 0) return;
  const auto st = static_cast<cudaStream_t>(stream);
  switch (elem) {
    case Elem::kFloat:
      return dropout_as<float>(seed, purpose, step, idx, batch, per, channels, channels_last, p, scale, x, out, st);
    case Elem::kBFloat16:
      return dropout_as<__nv_bfloat16>(seed, purpose, step, idx, batch, per, channels, channels_last, p, scale, x,
                                       out, st);
    case Elem::kHalf:
      return dropout_as<__half>(seed, purpose, step, idx, batch, per, channels, channels_last, p, scale, x, out, st);
  }
}

}  // namespace unidiff::rng::cuda
