// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011): a
// counter-based generator, so any random number is a pure function of (key, counter). Header-only,
// free of LibTorch and compiled both by the host compiler and by nvcc (core/rng_cuda.cu), so the
// CPU and a CUDA kernel produce the same numbers bit for bit.
//
// Bit-equality of the transforms: every float operation below is an IEEE-754 basic operation
// (+, -, *, /, sqrt, floor; all correctly rounded on both sides) evaluated in a fixed order with
// contraction into fused multiply-adds switched off (-ffp-contract=off on the host, -fmad=false in
// nvcc). The library log/sin/cos differ between glibc and CUDA in the last bit, so the normal
// transform uses the polynomial versions here (accurate to a few ulp of float64, far finer than
// the float32 result).
#pragma once

#include <array>
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define UD_HOST_DEVICE __host__ __device__
#else
#define UD_HOST_DEVICE
#endif

namespace unidiff::rng {

using PhiloxCounter = std::array<uint32_t, 4>;
using PhiloxKey = std::array<uint32_t, 2>;

/// One Philox4x32 block with 10 rounds, in place on ctr[4] with key[2] (device-friendly form).
UD_HOST_DEVICE inline void philox4x32_10_inplace(uint32_t* ctr, uint32_t k0, uint32_t k1) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(kM0) * ctr[0];
    const uint64_t p1 = static_cast<uint64_t>(kM1) * ctr[2];
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    const uint32_t c1 = ctr[1], c3 = ctr[3];
    ctr[0] = hi1 ^ c1 ^ k0;
    ctr[1] = lo1;
    ctr[2] = hi0 ^ c3 ^ k1;
    ctr[3] = lo0;
    k0 += kW0;
    k1 += kW1;
  }
}

/// One Philox4x32 block with 10 rounds: four 32-bit outputs.
inline PhiloxCounter philox4x32_10(PhiloxCounter ctr, PhiloxKey key) {
  philox4x32_10_inplace(ctr.data(), key[0], key[1]);
  return ctr;
}

/// Maps 32 random bits to a float64 uniform in the open interval (0, 1) (exact).
UD_HOST_DEVICE inline double bits_to_open_unit(uint32_t bits) {
  return (static_cast<double>(bits) + 0.5) * (1.0 / 4294967296.0);
}

/// Natural log of x in (0, 1] with +, *, / only: x = m 2^e with m in [sqrt(1/2), sqrt(2)),
/// log m = 2 atanh(s), s = (m - 1) / (m + 1), |s| < 0.1716, series to s^23 (error < 1e-17).
UD_HOST_DEVICE inline double det_log_unit(double x) {
  int e = 0;
  double m = x;
  // Exact scaling by powers of two into [1, 2) (x >= 2^-33 for our uniforms: at most 33 steps).
  while (m < 1.0) {
    m *= 2.0;
    --e;
  }
  if (m > 1.4142135623730951) {
    m *= 0.5;
    ++e;
  }
  const double s = (m - 1.0) / (m + 1.0);
  const double s2 = s * s;
  double p = 1.0 / 23.0;
  p = p * s2 + 1.0 / 21.0;
  p = p * s2 + 1.0 / 19.0;
  p = p * s2 + 1.0 / 17.0;
  p = p * s2 + 1.0 / 15.0;
  p = p * s2 + 1.0 / 13.0;
  p = p * s2 + 1.0 / 11.0;
  p = p * s2 + 1.0 / 9.0;
  p = p * s2 + 1.0 / 7.0;
  p = p * s2 + 1.0 / 5.0;
  p = p * s2 + 1.0 / 3.0;
  p = p * s2 + 1.0;
  return static_cast<double>(e) * 0.6931471805599453 + 2.0 * s * p;
}

/// cos(2 pi u) and sin(2 pi u) for u in [0, 1): quadrant from 4u, a reduced angle in
/// [-pi/4, pi/4], Taylor series to degree 17/18 (error < 1e-17).
UD_HOST_DEVICE inline void det_cos_sin_2pi(double u, double* c, double* s) {
  const double v = 4.0 * u;  // exact
  int q = static_cast<int>(v);
  double r = v - static_cast<double>(q);  // exact, in [0, 1)
  if (r >= 0.5) {
    r -= 1.0;
    ++q;
  }
  const double t = r * 1.5707963267948966;
  const double t2 = t * t;
  double sp = -1.0 / 355687428096000.0;  // -1/17!
  sp = sp * t2 + 1.0 / 1307674368000.0;  // 1/15!
  sp = sp * t2 - 1.0 / 6227020800.0;     // 1/13!
  sp = sp * t2 + 1.0 / 39916800.0;       // 1/11!
  sp = sp * t2 - 1.0 / 362880.0;         // 1/9!
  sp = sp * t2 + 1.0 / 5040.0;           // 1/7!
  sp = sp * t2 - 1.0 / 120.0;
  sp = sp * t2 + 1.0 / 6.0;
  const double sin_t = t - t * t2 * sp;  // t - t^3/3! + t^5/5! - ...
  double cp = 1.0 / 6402373705728000.0;  // 1/18!
  cp = cp * t2 - 1.0 / 20922789888000.0; // 1/16!
  cp = cp * t2 + 1.0 / 87178291200.0;    // 1/14!
  cp = cp * t2 - 1.0 / 479001600.0;      // 1/12!
  cp = cp * t2 + 1.0 / 3628800.0;        // 1/10!
  cp = cp * t2 - 1.0 / 40320.0;          // 1/8!
  cp = cp * t2 + 1.0 / 720.0;
  cp = cp * t2 - 1.0 / 24.0;
  cp = cp * t2 + 0.5;
  const double cos_t = 1.0 - t2 * cp;  // 1 - t^2/2! + t^4/4! - ...
  switch (q & 3) {
    case 0: *c = cos_t; *s = sin_t; break;
    case 1: *c = -sin_t; *s = cos_t; break;
    case 2: *c = -cos_t; *s = -sin_t; break;
    default: *c = sin_t; *s = -cos_t; break;
  }
}

/// Box-Muller on two words of random bits: two independent standard normals (float32).
UD_HOST_DEVICE inline void box_muller(uint32_t bits1, uint32_t bits2, float* z0, float* z1) {
  const double r = sqrt(-2.0 * det_log_unit(bits_to_open_unit(bits1)));
  double c = 0, s = 0;
  det_cos_sin_2pi(bits_to_open_unit(bits2), &c, &s);
  *z0 = static_cast<float>(r * c);
  *z1 = static_cast<float>(r * s);
}

/// 24 random bits centred in their cell: a float32 uniform strictly inside (0, 1) (exact).
UD_HOST_DEVICE inline float bits_to_unit_float(uint32_t bits) {
  return (static_cast<float>(bits >> 8) + 0.5f) * (1.0f / 16777216.0f);
}

/// Dropout's decision from a word: the element is kept when its uniform is >= p (float32 compare,
/// as a float32 uniform tensor compared with the scalar p).
UD_HOST_DEVICE inline bool dropout_keep(uint32_t bits, float p) { return bits_to_unit_float(bits) >= p; }

/// The word number within a sample of the element stored at position r of it: elements are
/// numbered in [C, H, W] order whatever the memory layout; channels-last stores [H, W, C]
/// (channels innermost) with C = `channels` and `per` = C * H * W elements per sample.
UD_HOST_DEVICE inline int64_t logical_index(int64_t r, int64_t per, int64_t channels, bool channels_last) {
  if (!channels_last) return r;
  return (r % channels) * (per / channels) + r / channels;
}

/// Integer uniform in [0, n) by multiply-shift (bias < n / 2^32).
UD_HOST_DEVICE inline int64_t bits_to_below(uint32_t bits, uint64_t n) {
  return static_cast<int64_t>((static_cast<uint64_t>(bits) * n) >> 32);
}

}  // namespace unidiff::rng
