// CUDA kernels of the keyed generator (core/rng.h): the same Philox words and the same transforms
// (core/philox.h) as the CPU loops, so results are equal bit for bit. Only raw pointers and a
// stream handle cross this boundary; core/rng.cpp dispatches here for CUDA devices when the build
// has the kernels (UNIDIFF_WITH_CUDA_KERNELS).
#pragma once

#include <cstdint>

namespace unidiff::rng::cuda {

/// The counter's step word: `host`, or (when `counter` is not null) (*counter << shift) | low read
/// by the kernel from device memory (core/rng.h StepKey).
struct StepWord {
  uint32_t host = 0;
  const int64_t* counter = nullptr;
  uint32_t shift = 0;
  uint32_t low = 0;
};

/// out[b * per + j]: standard normals of sample idx[b] (device pointers; `stream` a cudaStream_t).
void launch_normal(uint32_t seed, uint32_t purpose, StepWord step, const int64_t* idx,
                   int64_t batch, int64_t per, float* out, void* stream);
/// out[b * per + j]: float32 uniforms in (0, 1).
void launch_uniform(uint32_t seed, uint32_t purpose, StepWord step, const int64_t* idx,
                    int64_t batch, int64_t per, float* out, void* stream);
/// out[b]: integers in [0, n).
void launch_randint(uint32_t seed, uint32_t purpose, StepWord step, const int64_t* idx,
                    int64_t batch, uint64_t n, int64_t* out, void* stream);

/// Element types of launch_dropout.
enum class Elem { kFloat, kBFloat16, kHalf };

/// out = x * keep * scale over [batch, per] elements (x, out of type `elem`, NCHW-contiguous or,
/// with `channels_last`, [B, H, W, C] with C = `channels`); keep from word logical_index(r) of
/// sample idx[b] (core/philox.h dropout_keep).
void launch_dropout(uint32_t seed, uint32_t purpose, StepWord step, const int64_t* idx, int64_t batch,
                    int64_t per, int64_t channels, bool channels_last, float p, float scale, Elem elem,
                    const void* x, void* out, void* stream);

}  // namespace unidiff::rng::cuda
