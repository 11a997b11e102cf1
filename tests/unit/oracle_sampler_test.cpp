// Every sampler against the mixture oracle (FORMULAS.md section 4): samples of an exact denoiser
// must be as close to exact mixture samples, in sliced Wasserstein distance, as two independent
// exact sample sets are (within 1.5x plus a small constant), in 2-D and 16-D, on two schedules
// each where the sampler takes two. And CM, LCM and TrigFlow one- and few-step sampling of a
// single Gaussian through its exact consistency function give the right mean and std.
#include <gtest/gtest.h>

#include "core/error.h"
#include "experiments/metrics.h"
#include "experiments/sample.h"
#include "models/gmm.h"

namespace unidiff::experiments {
namespace {

/// A 2-D mixture of 3 overlapping components and a 16-D one of 3 components.
models::GaussianMixture mixture(int64_t dim) {
  torch::Tensor means = torch::zeros({3, dim}, torch::kFloat64);
  means[0][0] = 1.5;
  means[1][1] = 1.5;
  means[2][0] = -1.0;
  means[2][1] = -1.0;
  torch::Tensor stds = torch::full({3, dim}, 0.4, torch::kFloat64);
  stds[2] *= 1.5;
  return models::GaussianMixture(torch::tensor({0.3, 0.3, 0.4}), means, stds);
}

struct Case {
  const char* sampler;
  const char* schedule;
  int64_t steps;
};

/// The configuration of `unidiff sample --model=gmm` for one case.
SampleConfig oracle_config(const Case& c, uint32_t seed) {
  SampleConfig cfg;
  cfg.model = "gmm";
  cfg.sampler = c.sampler;
  cfg.schedule = c.schedule;
  cfg.steps = c.steps;
  cfg.seed = seed;
  return cfg;
}

class OracleSamplers : public ::testing::TestWithParam<int64_t> {
 protected:
  static constexpr int64_t kN = 3000;
  void check(const std::vector<Case>& cases) {
    const int64_t dim = GetParam();
    const models::GaussianMixture gmm = mixture(dim);
    const torch::Tensor ref = gmm.sample(kN, 100);
    // Baseline: the mean distance of two independent exact sets to the reference.
    const double base = 0.5 * (sliced_wasserstein(gmm.sample(kN, 101), ref, 256, 0) +
                               sliced_wasserstein(gmm.sample(kN, 102), ref, 256, 0));
    for (const Case& c : cases) {
      const torch::Tensor x = sample_gmm_oracle(oracle_config(c, 7), gmm, 0, kN);
      ASSERT_TRUE(torch::isfinite(x).all().item<bool>()) << c.sampler;
      const double sw = sliced_wasserstein(x, ref, 256, 0);
      EXPECT_LE(sw, 1.5 * base + 0.02) << c.sampler << " on " << c.schedule << " with " << c.steps
                                       << " steps, D = " << dim << ": SW " << sw << ", exact pairs "
                                       << base;
    }
  }
};

TEST_P(OracleSamplers, DdpmFamily) {
  check({{"ddpm", "ddpm-linear", 250},
         {"ddpm", "ddpm-cosine", 250},
         {"ddpm-simple", "ddpm-linear", 1000},
         {"ddim", "ddpm-linear", 50},
         {"ddim", "ddpm-cosine", 50},
         {"instaflow", "ddpm-linear", 50},
         {"instaflow", "ddpm-cosine", 50}});
}

TEST_P(OracleSamplers, OdeSamplers) {
  check({{"euler", "rf", 100},
         {"euler", "ddpm-cosine", 200},
         {"heun", "ve", 40},
         {"heun", "rf", 20},
         {"heun", "trigflow", 20}});
}

TEST_P(OracleSamplers, ConsistencyAndFewStep) {
  check({{"cm", "ve", 1}, {"cm", "ve", 3}, {"lcm", "ddpm-linear", 4}, {"lcm", "ddpm-cosine", 2},
         {"trigflow", "trigflow", 1}, {"trigflow", "trigflow", 2},
         {"fewstep", "rf", 2}, {"fewstep", "ddpm-cosine", 4}});
}

TEST_P(OracleSamplers, AnnealedLangevin) {
  check({{"smld", "ve", 100}});
}

INSTANTIATE_TEST_SUITE_P(Dims, OracleSamplers, ::testing::Values(2, 16),
                         [](const auto& info) { return "D" + std::to_string(info.param); });

TEST(OracleSamplerRules, SamplersRefuseSchedulesTheyDoNotTake) {
  const models::GaussianMixture gmm = mixture(2);
  SampleConfig c;
  c.model = "gmm";
  c.sampler = "smld";
  c.schedule = "rf";
  try {
    sample_gmm_oracle(c, gmm, 0, 10);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("takes schedules: ve"), std::string::npos) << e.what();
  }
  c.sampler = "ddim";
  EXPECT_THROW(sample_gmm_oracle(c, gmm, 0, 10), InputError);
  c.sampler = "warp";
  EXPECT_THROW(sample_gmm_oracle(c, gmm, 0, 10), InputError);
}

TEST(OracleSamplerRules, DeterministicDdimIsDeterministic) {
  const models::GaussianMixture gmm = mixture(2);
  SampleConfig c;
  c.model = "gmm";
  c.sampler = "ddim";
  c.schedule = "ddpm-linear";
  c.steps = 20;
  c.eta = 0;
  c.seed = 1;
  const torch::Tensor a = sample_gmm_oracle(c, gmm, 0, 200);
  // Only x_T depends on the seed's step-0 noise; the same x_T gives the same samples, and a
  // different batch split gives the same per-sample result.
  EXPECT_TRUE(torch::equal(a, sample_gmm_oracle(c, gmm, 0, 200)));
  EXPECT_TRUE(torch::equal(a.slice(0, 100, 200), sample_gmm_oracle(c, gmm, 100, 200)));
  c.eta = 1.0;
  const torch::Tensor b = sample_gmm_oracle(c, gmm, 0, 200);
  EXPECT_FALSE(torch::equal(a, b));
}

TEST(ConsistencyOracle, OneAndFewStepSamplingOfASingleGaussian) {
  // With the exact consistency function of N(mu, diag(s^2)) the one-step sample is an affine map
  // of x_T, so mean and std are exact up to x_T's own sampling error (and, on ve, the boundary
  // noise sigma = 0.002 and the ignored data term of x_T ~ N(0, 80^2)).
  const models::GaussianMixture g(torch::ones({1}), torch::tensor({{1.0, -2.0}}),
                                  torch::tensor({{0.5, 0.8}}));
  const torch::Tensor mu = torch::tensor({1.0, -2.0}, torch::kFloat64);
  const torch::Tensor sd = torch::tensor({0.5, 0.8}, torch::kFloat64);
  for (const Case& c : std::vector<Case>{{"cm", "ve", 1}, {"cm", "ve", 3}, {"lcm", "ddpm-linear", 1},
                                         {"lcm", "ddpm-linear", 4}, {"trigflow", "trigflow", 1},
                                         {"trigflow", "trigflow", 2}}) {
    const torch::Tensor x = sample_gmm_oracle(oracle_config(c, 3), g, 0, 20000).to(torch::kFloat64);
    // Standard errors at n = 20000: mean sd / 141, std sd / 200; allow 4 of them.
    EXPECT_LT(((x.mean(0) - mu).abs() / sd).max().item<double>(), 4.0 / 141) << c.sampler << c.steps;
    EXPECT_LT(((x.std(0) - sd).abs() / sd).max().item<double>(), 4.0 / 200 + 0.005)
        << c.sampler << c.steps << " std " << x.std(0);
  }
}

}  // namespace
}  // namespace unidiff::experiments
