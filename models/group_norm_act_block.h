// The block program of the fused GroupNorm (+ per-channel bias before it, + SiLU after it):
//
//   y = act(gamma_c * xhat + beta_c),   xhat = (x + bias_{n,c} - mean_{n,g}) * rstd_{n,g},
//   mean, var over the group's D = C / G channels and H * W positions (biased variance),
//   rstd = 1 / sqrt(var + eps), act = SiLU (a * sigmoid(a)) or the identity.
//
// One block per sample n and `k` consecutive groups (k = 1 for NCHW; for channels-last enough
// groups that a block's channels span 64 bytes, so neighbouring threads read neighbouring
// channels of one position). Its threads are the block's cb = k * D channels x `tpc` threads per
// channel; a thread owns one channel and the positions p = j, j + tpc, ... of it. Each phase below
// is what every thread of the block does between two barriers. The CUDA kernels
// (models/group_norm_act_cuda.cu) run them with __syncthreads() between phases; the host
// emulation (models/group_norm_act.cpp) runs the same phases thread after thread, so the code of
// the kernels is checked on machines without a GPU. All reductions have a fixed order (no
// atomics): the results do not depend on scheduling.
//
// Backward (g_a = dL/da, M = D * H * W elements per group, sums per sample n):
//   g_a = dy * act'(a),  act'(a) = s (1 + a (1 - s)) with s = sigmoid(a) for SiLU, 1 otherwise;
//   A_c = sum_p g_a xhat, B_c = sum_p g_a, X_c = sum_p xhat          (per channel c of the group)
//   S1 = sum_c gamma_c B_c = sum dxhat,  S2 = sum_c gamma_c A_c = sum dxhat xhat  (dxhat = gamma g_a)
//   dx = rstd (gamma_c g_a - S1 / M - xhat S2 / M)      (the usual normalisation backward)
//   dgamma_c = sum_n A_c,  dbeta_c = sum_n B_c,  dbias_{n,c} = sum_p dx = rstd (gamma_c B_c
//            - H W S1 / M - X_c S2 / M).
// The kernels write A and B per (n, c); the caller sums them over n.
//
// Memory: x, dy, y, dx in x's dtype (float, bfloat16, half), NCHW or NHWC (channels-last);
// bias [N, C], gamma, beta [C], statistics [N, G] in float32; arithmetic in float32.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define UD_GN_HD __host__ __device__
#else
#define UD_GN_HD
#endif

namespace unidiff::models::gn {

/// The problem and the block's thread layout (make_shape).
struct Shape {
  int64_t n = 0, c = 0, hw = 0, groups = 0;  ///< N, C, H * W, G
  int64_t d = 0;                            ///< channels per group, C / G
  int64_t k = 1;                            ///< groups per block (divides G)
  int64_t cb = 0;                           ///< channels per block, k * d
  int64_t tpc = 0;                          ///< threads per channel
  int64_t threads = 0;                      ///< threads per block, cb * tpc
  bool channels_last = false;               ///< NHWC storage (else NCHW)
  bool silu = true;                         ///< SiLU after the affine map (else identity)
  float eps = 1e-5f;
  /// Blocks: N * G / k.
  UD_GN_HD int64_t blocks() const { return n * (groups / k); }
  /// Threads that share one group: d * tpc.
  UD_GN_HD int64_t group_threads() const { return d * tpc; }
};

/// Threads per block aimed at: enough to keep a block busy on 32x32 maps, few enough for 4x4 ones.
constexpr int64_t kTargetThreads = 256;
/// The most threads a CUDA block may have: a block's channels may not exceed it.
constexpr int64_t kMaxThreads = 1024;
/// Channels-last: the channels a block spans at least (64 bytes of bfloat16), when G allows.
constexpr int64_t kMinChannelsLastSpan = 32;

inline Shape make_shape(int64_t n, int64_t c, int64_t hw, int64_t groups, bool channels_last, bool silu,
                        float eps) {
  Shape s;
  s.n = n;
  s.c = c;
  s.hw = hw;
  s.groups = groups;
  s.d = c / groups;
  s.k = 1;
  if (channels_last) {
    while (s.k * s.d < kMinChannelsLastSpan && s.k < groups) {
      int64_t next = s.k + 1;
      while (groups % next != 0) ++next;  // the next divisor of G
      if (next * s.d > kMaxThreads) break;
      s.k = next;
    }
  }
  s.cb = s.k * s.d;
  s.tpc = s.cb >= kTargetThreads ? 1 : kTargetThreads / s.cb;
  s.threads = s.cb * s.tpc;
  s.channels_last = channels_last;
  s.silu = silu;
  s.eps = eps;
  return s;
}

/// Element (n, c, p) in memory.
UD_GN_HD inline int64_t offset(const Shape& s, int64_t n, int64_t c, int64_t p) {
  return s.channels_last ? (n * s.hw + p) * s.c + c : (n * s.c + c) * s.hw + p;
}

/// Thread t's channel within the block and its first position. NHWC: neighbouring threads take
/// neighbouring channels (contiguous in memory); NCHW: neighbouring positions of one channel.
struct Slot {
  int64_t c;
  int64_t j;
};
UD_GN_HD inline Slot slot(const Shape& s, int64_t t) {
  return s.channels_last ? Slot{t % s.cb, t / s.cb} : Slot{t / s.tpc, t % s.tpc};
}
/// The thread that owns (channel c of the block, first position j): the inverse of slot().
UD_GN_HD inline int64_t thread_of(const Shape& s, int64_t c, int64_t j) {
  return s.channels_last ? j * s.cb + c : c * s.tpc + j;
}
/// Where thread t's statistics go for the reduction: the threads of the block's group i take the
/// contiguous slots [i * d * tpc, (i + 1) * d * tpc), one tree per group.
UD_GN_HD inline int64_t reduction_slot(const Shape& s, int64_t t) {
  const Slot sl = slot(s, t);
  return (sl.c / s.d) * s.group_threads() + (sl.c % s.d) * s.tpc + sl.j;
}
/// The block's sample and its first channel.
UD_GN_HD inline int64_t block_sample(const Shape& s, int64_t block) { return block / (s.groups / s.k); }
UD_GN_HD inline int64_t block_channel(const Shape& s, int64_t block) { return (block % (s.groups / s.k)) * s.cb; }

/// Running mean and sum of squared deviations (Welford), merged pairwise (Chan et al.).
struct Welford {
  float count;
  float mean;
  float m2;
};
UD_GN_HD inline void welford_add(Welford* w, float v) {
  w->count += 1.0f;
  const float delta = v - w->mean;
  w->mean += delta / w->count;
  w->m2 += delta * (v - w->mean);
}
UD_GN_HD inline Welford welford_merge(const Welford& a, const Welford& b) {
  const float count = a.count + b.count;
  if (b.count == 0.0f) return a;
  if (a.count == 0.0f) return b;
  const float delta = b.mean - a.mean, wb = b.count / count;
  return Welford{count, a.mean + delta * wb, a.m2 + b.m2 + delta * delta * a.count * wb};
}

/// Tree reduction over `threads` slots: the first stride (half the next power of two), then
/// halving; at each level thread t < stride folds slot t + stride into slot t when it exists.
UD_GN_HD inline int64_t first_stride(int64_t threads) {
  int64_t p = 1;
  while (p < threads) p <<= 1;
  return p / 2;
}

UD_GN_HD inline float sigmoid(float a) { return 1.0f / (1.0f + expf(-a)); }

UD_GN_HD inline float activate(bool silu, float a) { return silu ? a * sigmoid(a) : a; }

/// dL/da from dL/dy.
UD_GN_HD inline float activate_grad(bool silu, float a, float dy) {
  if (!silu) return dy;
  const float sg = sigmoid(a);
  return dy * (sg * (1.0f + a * (1.0f - sg)));
}

template <typename T>
struct Forward {
  Shape s;
  const T* x;
  const float* bias;  ///< [N, C] or null
  const float* gamma;
  const float* beta;
  T* y;
  float* mean;  ///< [N * G] out
  float* rstd;  ///< [N * G] out

  /// Phase 1: the thread's Welford state into its reduction slot.
  UD_GN_HD void stats(int64_t block, int64_t t, Welford* sh) const {
    const int64_t n = block_sample(s, block);
    const Slot sl = slot(s, t);
    const int64_t c = block_channel(s, block) + sl.c;
    const float b = bias != nullptr ? bias[n * s.c + c] : 0.0f;
    Welford w{0.0f, 0.0f, 0.0f};
    for (int64_t p = sl.j; p < s.hw; p += s.tpc) welford_add(&w, static_cast<float>(x[offset(s, n, c, p)]) + b);
    sh[reduction_slot(s, t)] = w;
  }

  /// Phase 2, each level of the trees (first_stride(d * tpc) down to 1): slot t folds in slot
  /// t + stride of the same group when it exists.
  UD_GN_HD void reduce(int64_t t, int64_t stride, Welford* sh) const {
    const int64_t u = t % s.group_threads();
    if (u < stride && u + stride < s.group_threads()) sh[t] = welford_merge(sh[t], sh[t + stride]);
  }

  /// Phase 3: normalise, affine map, activation.
  UD_GN_HD void apply(int64_t block, int64_t t, const Welford* sh) const {
    const int64_t n = block_sample(s, block);
    const Slot sl = slot(s, t);
    const int64_t c = block_channel(s, block) + sl.c, group = sl.c / s.d;
    const Welford& w = sh[group * s.group_threads()];
    const float mu = w.mean, r = 1.0f / sqrtf(w.m2 / w.count + s.eps);
    if (t < s.k) {  // thread i writes the statistics of the block's group i
      const Welford& wi = sh[t * s.group_threads()];
      const int64_t g = n * s.groups + block_channel(s, block) / s.d + t;
      mean[g] = wi.mean;
      rstd[g] = 1.0f / sqrtf(wi.m2 / wi.count + s.eps);
    }
    const float b = bias != nullptr ? bias[n * s.c + c] : 0.0f;
    const float scale = r * gamma[c], shift = beta[c] - mu * scale;
    for (int64_t p = sl.j; p < s.hw; p += s.tpc) {
      const int64_t i = offset(s, n, c, p);
      y[i] = T(activate(s.silu, (static_cast<float>(x[i]) + b) * scale + shift));
    }
  }
};

/// Shared floats the backward block needs: 3 per thread, 3 per channel, 2 per group.
UD_GN_HD inline int64_t backward_shared_floats(const Shape& s) { return 3 * s.threads + 3 * s.cb + 2 * s.k; }

template <typename T>
struct Backward {
  Shape s;
  const T* dy;
  const T* x;
  const float* bias;  ///< [N, C] or null
  const float* gamma;
  const float* beta;
  const float* mean;  ///< [N * G]
  const float* rstd;  ///< [N * G]
  T* dx;
  float* a_sum;   ///< [N, C] out: A (dgamma before the sum over n)
  float* b_sum;   ///< [N, C] out: B (dbeta before the sum over n)
  float* dbias;   ///< [N, C] out, or null when there is no bias

  /// Recomputes xhat and g_a of the element at offset i (channel c).
  UD_GN_HD void element(int64_t c, int64_t i, float b, float mu, float r, float* xhat, float* ga) const {
    *xhat = (static_cast<float>(x[i]) + b - mu) * r;
    *ga = activate_grad(s.silu, gamma[c] * *xhat + beta[c], static_cast<float>(dy[i]));
  }

  /// Phase 1: the thread's partial A, B, X into sh[3t .. 3t + 2].
  UD_GN_HD void partial_sums(int64_t block, int64_t t, float* sh) const {
    const int64_t n = block_sample(s, block);
    const Slot sl = slot(s, t);
    const int64_t c = block_channel(s, block) + sl.c, g = n * s.groups + c / s.d;
    const float b = bias != nullptr ? bias[n * s.c + c] : 0.0f;
    float sa = 0.0f, sb = 0.0f, sx = 0.0f, xhat = 0.0f, ga = 0.0f;
    for (int64_t p = sl.j; p < s.hw; p += s.tpc) {
      element(c, offset(s, n, c, p), b, mean[g], rstd[g], &xhat, &ga);
      sa += ga * xhat;
      sb += ga;
      sx += xhat;
    }
    sh[3 * t] = sa;
    sh[3 * t + 1] = sb;
    sh[3 * t + 2] = sx;
  }

  /// Phase 2: thread t < cb sums channel t's partials in order j = 0, 1, ... into shc[3t ..].
  UD_GN_HD void channel_sums(int64_t block, int64_t t, const float* sh, float* shc) const {
    if (t >= s.cb) return;
    float sa = 0.0f, sb = 0.0f, sx = 0.0f;
    for (int64_t j = 0; j < s.tpc; ++j) {
      const int64_t k = thread_of(s, t, j);
      sa += sh[3 * k];
      sb += sh[3 * k + 1];
      sx += sh[3 * k + 2];
    }
    shc[3 * t] = sa;
    shc[3 * t + 1] = sb;
    shc[3 * t + 2] = sx;
    const int64_t n = block_sample(s, block), c = block_channel(s, block) + t;
    a_sum[n * s.c + c] = sa;
    b_sum[n * s.c + c] = sb;
  }

  /// Phase 3: thread i < k forms S1, S2 of the block's group i into shc[3 cb + 2i ..].
  UD_GN_HD void group_sums(int64_t block, int64_t t, float* shc) const {
    if (t >= s.k) return;
    const int64_t c0 = block_channel(s, block) + t * s.d;
    float s1 = 0.0f, s2 = 0.0f;
    for (int64_t q = 0; q < s.d; ++q) {
      const int64_t cl = t * s.d + q;
      s1 += gamma[c0 + q] * shc[3 * cl + 1];
      s2 += gamma[c0 + q] * shc[3 * cl];
    }
    shc[3 * s.cb + 2 * t] = s1;
    shc[3 * s.cb + 2 * t + 1] = s2;
  }

  /// Phase 4: dx for the thread's elements; thread t < cb also the bias gradient of channel t.
  UD_GN_HD void input_grads(int64_t block, int64_t t, const float* shc) const {
    const int64_t n = block_sample(s, block), c0 = block_channel(s, block);
    const float inv_m = 1.0f / static_cast<float>(s.d * s.hw);
    const Slot sl = slot(s, t);
    {
      const int64_t c = c0 + sl.c, group = sl.c / s.d, g = n * s.groups + c / s.d;
      const float mu = mean[g], r = rstd[g];
      const float s1m = shc[3 * s.cb + 2 * group] * inv_m, s2m = shc[3 * s.cb + 2 * group + 1] * inv_m;
      const float b = bias != nullptr ? bias[n * s.c + c] : 0.0f;
      float xhat = 0.0f, ga = 0.0f;
      for (int64_t p = sl.j; p < s.hw; p += s.tpc) {
        const int64_t i = offset(s, n, c, p);
        element(c, i, b, mu, r, &xhat, &ga);
        dx[i] = T(r * (gamma[c] * ga - s1m - xhat * s2m));
      }
    }
    if (dbias != nullptr && t < s.cb) {
      const int64_t c = c0 + t, group = t / s.d, g = n * s.groups + c / s.d;
      const float s1m = shc[3 * s.cb + 2 * group] * inv_m, s2m = shc[3 * s.cb + 2 * group + 1] * inv_m;
      dbias[n * s.c + c] = rstd[g] * (gamma[c] * shc[3 * t + 1] - static_cast<float>(s.hw) * s1m - shc[3 * t + 2] * s2m);
    }
  }
};

}  // namespace unidiff::models::gn
