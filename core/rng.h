// Keyed randomness. Every random draw that affects training is a pure function of
// (seed, purpose, step, global sample index), never of the rank or the world size, so a run on W
// ranks sees the same numbers as on one, and a resumed run the same as an uninterrupted one.
//
// Layout: Philox key = (seed, purpose); counter = (block, index low, index high, step), where
// `block` numbers the 4-word blocks of one sample's stream. Normals use Box-Muller in float64.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <string>

namespace unidiff::rng {

/// What a stream is for. The value is part of the key: streams of different purposes never share
/// numbers. Append only; never renumber (checkpoints and recorded runs depend on these).
enum class Purpose : uint32_t {
  kDataOrder = 1,   ///< per-epoch permutation of the dataset
  kTimestep = 2,    ///< diffusion time of each training sample
  kNoise = 3,       ///< diffusion noise of each training sample
  kLabelDrop = 4,   ///< classifier-free-guidance label dropout
  kDropout = 5,     ///< dropout masks
  kSampling = 6,    ///< noise used by samplers
  kInit = 7,        ///< parameter initialisation
  kEval = 8,        ///< evaluation (projection directions, subsets)
  kDataGen = 9,     ///< synthetic datasets (toy distributions, mixtures)
  kAugment = 10,    ///< data augmentation (flips)
  kBackwardSim = 11,   ///< re-noising in a few-step generator's backward simulation (DMD2)
  kGeneratorStep = 12, ///< which of a few-step generator's steps a sample trains
  kClassLabel = 13,    ///< class labels drawn for generated samples
  kGanTimestep = 14,   ///< diffusion time of a discriminator's inputs
  kGanNoise = 15,      ///< diffusion noise of a discriminator's inputs
  kGuidance = 16,      ///< guidance scales drawn per sample (LCM, guided distillation)
};

std::string to_string(Purpose purpose);

/// One keyed stream: seed and purpose fixed, then (step, index) addresses a sample's numbers.
/// A step with several phases or sub-steps (k fake-score updates per generator update, PPO's
/// inner epochs over stored rollouts) names them in the key too: `phase` (0..255, a method's
/// numbering of its phases) and `sub` (0..65535, the sub-step within the phase). Phase 0, sub 0
/// is the plain stream of a single-phase step.
struct Stream {
  uint32_t seed = 0;
  Purpose purpose = Purpose::kNoise;
  uint8_t phase = 0;
  uint16_t sub = 0;

  /// The second word of the Philox key: purpose | phase << 8 | sub << 16 (purposes stay below
  /// 256), so phase 0 and sub-step 0 keep the plain stream's numbers.
  uint32_t key_word() const {
    return static_cast<uint32_t>(purpose) | static_cast<uint32_t>(phase) << 8 | static_cast<uint32_t>(sub) << 16;
  }
  /// This stream in phase `p`, sub-step `s`.
  Stream in(uint8_t p, uint16_t s = 0) const { return {seed, purpose, p, s}; }
};

/// The step word of a draw's Philox counter. Usually a number known on the host; for a step that
/// a captured CUDA graph replays, a 0-dim int64 tensor on the draw's device that holds the step
/// (the graph advances it without the host), so the same kernels draw each step's numbers. Either
/// way the word is (step << shift) | low, truncated to 32 bits (dropout keeps its layer number in
/// the low bits); a host step must fit the 32-bit word, a device one is not checked.
struct StepKey {
  StepKey(uint64_t step) : host(step) {}  // NOLINT: implicit, so a plain step number is a key
  explicit StepKey(torch::Tensor counter, unsigned shift = 0, uint32_t low = 0)
      : counter(std::move(counter)), shift(shift), low(low) {}
  uint64_t host = 0;
  torch::Tensor counter;  ///< int64 0-dim; when defined, `host` is unused
  unsigned shift = 0;
  uint32_t low = 0;
  /// The 32-bit word, read on the host (a synchronisation for a CUDA counter).
  uint32_t word() const;
};

/// `count` raw 32-bit words of sample `index` at `step`.
void fill_bits(Stream stream, uint64_t step, uint64_t index, uint32_t* out, int64_t count);

/// Standard normals: result[b] holds the numbers of sample indices[b] at `step`.
/// indices: int64 [B]; returns float32 [B, *shape] on `device`. On a CUDA device a kernel draws
/// them there (when the build has the kernels; else the CPU's are copied): equal bit for bit.
/// On CUDA nothing synchronises with the host: indices already on the device stay there, and a
/// device step counter is read by the kernels.
torch::Tensor normal(Stream stream, const StepKey& step, const torch::Tensor& indices,
                     at::IntArrayRef shape, torch::Device device = torch::kCPU);

/// Uniforms in (0, 1), same addressing as `normal`. Returns float32 [B, *shape] on `device`.
torch::Tensor uniform(Stream stream, const StepKey& step, const torch::Tensor& indices,
                      at::IntArrayRef shape, torch::Device device = torch::kCPU);

/// Integers uniform in [0, n) (one per sample, by rejection-free multiply-shift; bias < n / 2^32).
/// Returns int64 [B] on `device`.
torch::Tensor randint(Stream stream, const StepKey& step, const torch::Tensor& indices, int64_t n,
                      torch::Device device = torch::kCPU);

/// x * keep * scale, keep = (uniform(stream, step, indices)[b, j] >= p), scale = 1 / (1 - p): a
/// keyed dropout mask applied to x [B, ...] (models/keyed_dropout.h). Element j of a sample is
/// numbered in logical [C, H, W] order whatever x's memory layout; the result keeps x's dtype and
/// layout. On CUDA (with the kernels) one fused kernel draws and applies the mask without making
/// it; elsewhere the uniforms are drawn and multiplied in. The same numbers bit for bit.
torch::Tensor apply_dropout_mask(Stream stream, const StepKey& step, const torch::Tensor& indices,
                                 const torch::Tensor& x, double p);

/// Whether CUDA devices draw with unidiff's own kernels (else CPU numbers are copied over).
bool has_cuda_kernels();

/// A permutation of 0..n-1 that is a pure function of (seed, purpose, step): sample i gets the
/// 64-bit key of its stream at `step`, and the permutation sorts by key. int64 [n] (CPU).
torch::Tensor permutation(Stream stream, uint64_t step, int64_t n);

/// Convenience: indices 0..B-1 as int64 [B] (CPU).
torch::Tensor arange_indices(int64_t begin, int64_t end);

}  // namespace unidiff::rng
