// Sample-set distances against closed forms for Gaussians.
#include <gtest/gtest.h>

#include "core/rng.h"
#include "experiments/metrics.h"

namespace unidiff::experiments {
namespace {

torch::Tensor gaussian(int64_t n, int64_t d, uint32_t seed, double mean, double sd) {
  return rng::normal({seed, rng::Purpose::kDataGen}, 0, rng::arange_indices(0, n), {d})
             .to(torch::kFloat64) * sd + mean;
}

TEST(SlicedWasserstein, ZeroForIdenticalSets) {
  const torch::Tensor x = gaussian(1000, 3, 1, 0, 1);
  EXPECT_NEAR(sliced_wasserstein(x, x, 64, 0), 0.0, 1e-12);
}

TEST(SlicedWasserstein, ShiftedGaussiansGiveTheClosedForm) {
  // N(a, I) vs N(b, I) in 2-D: along direction theta the 1-D W2 is |(a - b) . theta|, and its
  // square averaged over the circle is |a - b|^2 / 2, so SW = |a - b| / sqrt(2).
  torch::Tensor x = gaussian(20000, 2, 1, 0, 1), y = gaussian(20000, 2, 2, 0, 1);
  y.select(1, 0) += 3.0;
  y.select(1, 1) += 4.0;  // |a - b| = 5
  EXPECT_NEAR(sliced_wasserstein(x, y, 2000, 0), 5.0 / std::sqrt(2.0), 0.05);
}

TEST(SlicedWasserstein, HandlesSetsOfDifferentSizes) {
  // Scaled Gaussians: N(0, I) vs N(0, 4 I): 1-D W2 between N(0,1) and N(0,4) is |2 - 1| = 1 in
  // every direction, so SW = 1.
  const torch::Tensor x = gaussian(20000, 2, 3, 0, 1), y = gaussian(7000, 2, 4, 0, 2);
  EXPECT_NEAR(sliced_wasserstein(x, y, 500, 1), 1.0, 0.05);
}

TEST(Mmd, MatchesTheGaussianClosedForm) {
  // x ~ N(a, s^2 I), y ~ N(b, s^2 I) in d dims, k = exp(-|u - v|^2 / (2 h^2)):
  // E k(x, x') = (h^2 / (h^2 + 2 s^2))^(d/2) =: c, E k(x, y) = c exp(-|a - b|^2 / (2 (h^2 + 2 s^2))),
  // so MMD^2 = 2 c (1 - exp(-|a - b|^2 / (2 (h^2 + 2 s^2)))).
  const double s = 1.0, h = 1.5, shift = 1.0;
  const int d = 2;
  torch::Tensor x = gaussian(3000, d, 5, 0, s), y = gaussian(3000, d, 6, 0, s);
  y.select(1, 0) += shift;
  const double c = std::pow(h * h / (h * h + 2 * s * s), d / 2.0);
  const double expected = 2 * c * (1 - std::exp(-shift * shift / (2 * (h * h + 2 * s * s))));
  EXPECT_NEAR(mmd2_rbf(x, y, h), expected, 0.01);
  // Same distribution: the unbiased estimate is centred on 0.
  EXPECT_NEAR(mmd2_rbf(x, gaussian(3000, d, 7, 0, s), h), 0.0, 0.005);
}

TEST(Mmd, MedianDistanceOfAStandardGaussian) {
  // |x - x'| for x, x' ~ N(0, I_2) is sqrt(2) times a Rayleigh(1) variable, whose median is
  // sqrt(2 ln 2); so the median is 2 sqrt(ln 2) = 1.665.
  EXPECT_NEAR(median_distance(gaussian(2000, 2, 8, 0, 1)), 2 * std::sqrt(std::log(2.0)), 0.04);
}

}  // namespace
}  // namespace unidiff::experiments
