// Keyed randomness: Philox4x32-10 against Random123's published known-answer vectors, and the
// properties the training loop relies on (per-sample addressing, moments, permutations); the
// normal transform's own log/cos/sin against the library; CUDA draws equal to CPU draws (GPU only).
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <vector>

#include "core/philox.h"
#include "core/rng.h"

namespace unidiff::rng {
namespace {

TEST(Philox, Random123KnownAnswers) {
  // Random123 tests/kat_vectors, philox4x32_10.
  EXPECT_EQ(philox4x32_10({0, 0, 0, 0}, {0, 0}),
            (PhiloxCounter{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}));
  EXPECT_EQ(philox4x32_10({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
                          {0xffffffffu, 0xffffffffu}),
            (PhiloxCounter{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}));
  EXPECT_EQ(philox4x32_10({0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
                          {0xa4093822u, 0x299f31d0u}),
            (PhiloxCounter{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}));
}

TEST(KeyedRng, SampleNumbersDoNotDependOnTheBatch) {
  const Stream s{7, Purpose::kNoise};
  const torch::Tensor all = normal(s, 3, arange_indices(0, 10), {3, 2});
  const torch::Tensor some = normal(s, 3, torch::tensor({7, 2, 5}, torch::kInt64), {3, 2});
  EXPECT_TRUE(torch::equal(some[0], all[7]));
  EXPECT_TRUE(torch::equal(some[1], all[2]));
  EXPECT_TRUE(torch::equal(some[2], all[5]));
}

TEST(KeyedRng, AStepCounterTensorKeysLikeItsHostNumber) {
  // StepKey's word is (step << shift) | low: a counter tensor gives the numbers of that host step.
  const Stream s{9, Purpose::kDropout};
  const torch::Tensor idx = arange_indices(40, 47);
  const torch::Tensor counter = torch::tensor(int64_t{1234});
  EXPECT_TRUE(torch::equal(normal(s, StepKey(counter), idx, {5}), normal(s, 1234, idx, {5})));
  EXPECT_TRUE(torch::equal(uniform(s, StepKey(counter, 16, 3), idx, {4}), uniform(s, (1234u << 16) | 3u, idx, {4})));
  EXPECT_TRUE(torch::equal(randint(s, StepKey(counter), idx, 77), randint(s, 1234, idx, 77)));
  EXPECT_FALSE(torch::equal(normal(s, StepKey(counter), idx, {5}), normal(s, 1235, idx, {5})));
  EXPECT_EQ(StepKey(torch::tensor(int64_t{0x1FFFF}), 16, 7).word(), 0xFFFF0007u) << "truncated to 32 bits";
}

TEST(KeyedRng, StreamsDifferBySeedPurposeAndStep) {
  const torch::Tensor idx = arange_indices(0, 4);
  const torch::Tensor a = normal({1, Purpose::kNoise}, 0, idx, {8});
  EXPECT_FALSE(torch::equal(a, normal({2, Purpose::kNoise}, 0, idx, {8})));
  EXPECT_FALSE(torch::equal(a, normal({1, Purpose::kTimestep}, 0, idx, {8})));
  EXPECT_FALSE(torch::equal(a, normal({1, Purpose::kNoise}, 1, idx, {8})));
  EXPECT_TRUE(torch::equal(a, normal({1, Purpose::kNoise}, 0, idx, {8})));
}

TEST(KeyedRng, NormalMomentsMatchTheStandardNormal) {
  // 400,000 draws: the standard error of the mean is 1/sqrt(4e5) = 0.0016; of the variance
  // sqrt(2/4e5) = 0.0022. Tolerances are 4 standard errors.
  const torch::Tensor z = normal({11, Purpose::kNoise}, 0, arange_indices(0, 1000), {400})
                              .to(torch::kFloat64);
  EXPECT_NEAR(z.mean().item<double>(), 0.0, 0.0064);
  EXPECT_NEAR(z.var().item<double>(), 1.0, 0.009);
  // Fourth moment of N(0, 1) is 3; its standard error is sqrt(96 / 4e5) = 0.015.
  EXPECT_NEAR(z.pow(4).mean().item<double>(), 3.0, 0.06);
  // Odd dimension: the last Box-Muller pair is cut in half correctly.
  EXPECT_EQ(normal({1, Purpose::kNoise}, 0, arange_indices(0, 2), {3}).sizes(),
            torch::IntArrayRef({2, 3}));
}

TEST(KeyedRng, UniformIsInsideTheOpenUnitIntervalWithTheRightMean) {
  const torch::Tensor u = uniform({3, Purpose::kDataGen}, 0, arange_indices(0, 1000), {100});
  EXPECT_GT(u.min().item<float>(), 0.0f);
  EXPECT_LT(u.max().item<float>(), 1.0f);
  // Var U(0,1) = 1/12; standard error of the mean over 1e5 draws = 0.00091.
  EXPECT_NEAR(u.mean().item<double>(), 0.5, 0.004);
}

TEST(KeyedRng, RandintCoversTheRangeUniformly) {
  const torch::Tensor r = randint({5, Purpose::kTimestep}, 0, arange_indices(0, 100000), 10);
  EXPECT_EQ(r.min().item<int64_t>(), 0);
  EXPECT_EQ(r.max().item<int64_t>(), 9);
  const torch::Tensor counts = torch::bincount(r, {}, 10).to(torch::kFloat64);
  // Each count ~ Binomial(1e5, 0.1): sd = sqrt(9000) = 95; allow 5 sd.
  EXPECT_LT((counts - 10000).abs().max().item<double>(), 475);
}

TEST(KeyedRng, PermutationIsAPermutationThatChangesWithTheStep) {
  const torch::Tensor p0 = permutation({1, Purpose::kDataOrder}, 0, 1000);
  const torch::Tensor p1 = permutation({1, Purpose::kDataOrder}, 1, 1000);
  EXPECT_TRUE(torch::equal(std::get<0>(torch::sort(p0)), torch::arange(1000, torch::kInt64)));
  EXPECT_FALSE(torch::equal(p0, p1));
  EXPECT_TRUE(torch::equal(p0, permutation({1, Purpose::kDataOrder}, 0, 1000)));
}


TEST(Rng, PolynomialLogAndSinCosMatchTheLibraryToFloat64Precision) {
  // The normal transform's own log / cos / sin (core/philox.h) must be as accurate as the
  // library's, for the whole range of 32-bit uniforms including both ends.
  double worst_log = 0, worst_trig = 0;
  std::vector<uint32_t> words(4000);
  fill_bits({11, Purpose::kNoise}, 0, 0, words.data(), static_cast<int64_t>(words.size()));
  words.push_back(0);
  words.push_back(0xFFFFFFFFu);
  words.push_back(0x80000000u);
  words.push_back(0x40000000u);
  for (const uint32_t w : words) {
    const double u = bits_to_open_unit(w);
    worst_log = std::max(worst_log, std::abs(det_log_unit(u) - std::log(u)) / std::abs(std::log(u)));
    double c = 0, s = 0;
    det_cos_sin_2pi(u, &c, &s);
    const double theta = 2.0 * std::numbers::pi * u;
    worst_trig = std::max({worst_trig, std::abs(c - std::cos(theta)), std::abs(s - std::sin(theta))});
  }
  EXPECT_LT(worst_log, 1e-15);
  EXPECT_LT(worst_trig, 2e-15);
}

TEST(Rng, CudaDrawsEqualCpuDrawsBitForBit) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device here (checked on the GPU host)";
  EXPECT_TRUE(has_cuda_kernels()) << "a CUDA build without unidiff's kernels copies CPU numbers";
  const torch::Device cuda(torch::kCUDA, 0);
  const torch::Tensor idx = torch::cat({torch::arange(0, 3000, torch::kInt64),
                                        torch::tensor({int64_t{1} << 40, (int64_t{1} << 33) + 7})});
  for (const uint64_t step : {uint64_t{0}, uint64_t{12345}}) {
    const Stream s{7, Purpose::kNoise};
    EXPECT_TRUE(torch::equal(normal(s, step, idx, {3, 5}), normal(s, step, idx, {3, 5}, cuda).cpu()));
    EXPECT_TRUE(torch::equal(normal(s, step, idx, {1}), normal(s, step, idx, {1}, cuda).cpu()));
    EXPECT_TRUE(torch::equal(uniform(s, step, idx, {9}), uniform(s, step, idx, {9}, cuda).cpu()));
    EXPECT_TRUE(torch::equal(randint(s, step, idx, 1000), randint(s, step, idx, 1000, cuda).cpu()));
    // The step read by the kernels from a device counter (as a captured CUDA graph draws), with
    // indices already on the device.
    const torch::Tensor counter = torch::tensor(static_cast<int64_t>(step)).to(cuda);
    const torch::Tensor idx_cuda = idx.to(cuda);
    EXPECT_TRUE(torch::equal(normal(s, step, idx, {3, 5}), normal(s, StepKey(counter), idx_cuda, {3, 5}, cuda).cpu()));
    EXPECT_TRUE(torch::equal(uniform(s, (step << 16) | 5u, idx, {9}),
                             uniform(s, StepKey(counter, 16, 5), idx_cuda, {9}, cuda).cpu()));
    EXPECT_TRUE(torch::equal(randint(s, step, idx, 1000), randint(s, StepKey(counter), idx_cuda, 1000, cuda).cpu()));
    // From pinned host indices (the loader's), copied over without waiting.
    const torch::Tensor idx_pinned = idx.pin_memory();
    EXPECT_TRUE(torch::equal(normal(s, step, idx, {3, 5}), normal(s, step, idx_pinned, {3, 5}, cuda).cpu()));
  }
}

}  // namespace
}  // namespace unidiff::rng

namespace unidiff::rng {
namespace {

TEST(KeyedRng, PhasesAndSubStepsAreStreamsOfTheirOwn) {
  // Phase 0, sub-step 0 is the plain stream (every earlier run's numbers); the key word is
  // purpose | phase << 8 | sub << 16.
  const Stream plain{7, Purpose::kNoise};
  EXPECT_EQ(plain.key_word(), 3u);
  EXPECT_EQ(plain.in(2, 5).key_word(), 3u | 2u << 8 | 5u << 16);
  const torch::Tensor idx = arange_indices(0, 64);
  EXPECT_TRUE(torch::equal(normal(plain.in(0, 0), 3, idx, {4}), normal(plain, 3, idx, {4})));
  uint32_t raw[4], keyed[4];
  fill_bits(plain, 3, 5, raw, 4);
  const PhiloxCounter direct = philox4x32_10({0, 5, 0, 3}, {7, 3});
  for (int i = 0; i < 4; ++i) EXPECT_EQ(raw[i], direct[i]);  // Philox under the key (seed, purpose)
  // Every (phase, sub-step) pair draws other numbers, still per sample and batch-independent.
  std::vector<torch::Tensor> draws;
  for (uint8_t p : {0, 1, 2}) {
    for (uint16_t s : {0, 1, 4}) draws.push_back(normal(plain.in(p, s), 3, idx, {4}));
  }
  for (size_t a = 0; a < draws.size(); ++a) {
    for (size_t b = a + 1; b < draws.size(); ++b) EXPECT_FALSE(torch::allclose(draws[a], draws[b])) << a << " " << b;
  }
  const torch::Tensor some = normal(plain.in(1, 4), 3, torch::tensor({9, 2}, torch::kInt64), {4});
  EXPECT_TRUE(torch::equal(some[0], draws[5][9]));
  fill_bits(plain.in(1, 4), 3, 5, keyed, 4);
  EXPECT_NE(keyed[0], raw[0]);
}

}  // namespace
}  // namespace unidiff::rng
