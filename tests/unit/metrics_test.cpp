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

namespace unidiff::experiments {
namespace {

TEST(FrechetDistance, GaussiansWithCommutingCovariancesHaveTheClosedForm) {
  // S1 = R D1 R^T, S2 = R D2 R^T: FD = |mu1 - mu2|^2 + sum (sqrt d1 - sqrt d2)^2.
  const torch::Tensor q = std::get<0>(torch::linalg_qr(torch::randn({6, 6}, torch::kFloat64)));
  const torch::Tensor d1 = torch::tensor({0.5, 1.0, 2.0, 3.0, 0.1, 4.0}, torch::kFloat64);
  const torch::Tensor d2 = torch::tensor({1.5, 0.2, 2.0, 1.0, 0.3, 9.0}, torch::kFloat64);
  const torch::Tensor s1 = q.matmul(torch::diag(d1)).matmul(q.t()), s2 = q.matmul(torch::diag(d2)).matmul(q.t());
  const torch::Tensor mu1 = torch::randn({6}, torch::kFloat64), mu2 = torch::randn({6}, torch::kFloat64);
  const double want = (mu1 - mu2).pow(2).sum().item<double>() + (d1.sqrt() - d2.sqrt()).pow(2).sum().item<double>();
  EXPECT_NEAR(frechet_distance(mu1, s1, mu2, s2), want, 1e-9 * want);
  EXPECT_NEAR(frechet_distance(mu1, s1, mu1, s1), 0.0, 1e-9);
  // Non-commuting: symmetric in its arguments, and 1-D Gaussians give (m1 - m2)^2 + (s1 - s2)^2.
  const torch::Tensor a = torch::randn({6, 6}, torch::kFloat64), b = torch::randn({6, 6}, torch::kFloat64);
  const torch::Tensor sa = a.matmul(a.t()), sb = b.matmul(b.t());
  EXPECT_NEAR(frechet_distance(mu1, sa, mu2, sb), frechet_distance(mu2, sb, mu1, sa), 1e-8);
  EXPECT_NEAR(frechet_distance(torch::tensor({1.0}, torch::kFloat64), torch::tensor({{4.0}}, torch::kFloat64),
                               torch::tensor({3.0}, torch::kFloat64), torch::tensor({{9.0}}, torch::kFloat64)),
              4.0 + 1.0, 1e-12);
  // From samples: two draws of one Gaussian are close, a shifted one is |shift|^2 away.
  const torch::Tensor x = torch::randn({20000, 3}, torch::kFloat64), y = torch::randn({20000, 3}, torch::kFloat64);
  EXPECT_LT(frechet_distance(x, y), 0.01);
  EXPECT_NEAR(frechet_distance(x, y + 2.0), 12.0, 0.15);
}

}  // namespace
}  // namespace unidiff::experiments
