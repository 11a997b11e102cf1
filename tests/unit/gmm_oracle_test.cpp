// The analytic oracles: the mixture's posterior mean against a PyTorch Bayes computation, its
// exact samples, and the single Gaussian's closed-form ODE map against numerical integration.
#include <gtest/gtest.h>

#include <cstdlib>

#include "core/error.h"
#include "core/h5.h"
#include "models/gmm.h"
#include "objectives/sampling/ode.h"
#include "test_util.h"

namespace unidiff::models {
namespace {

TEST(GaussianMixture, PosteriorMeanMatchesThePyTorchReference) {
  UD_REFERENCE_FILE(p, "UNIDIFF_MATH_REFERENCE");
  const h5::File f = h5::File::open_read(p);
  const GaussianMixture gmm(h5::read_tensor(f, "/gmm/weights"), h5::read_tensor(f, "/gmm/means"),
                            h5::read_tensor(f, "/gmm/stds"));
  const torch::Tensor got = gmm.posterior_mean(h5::read_tensor(f, "/gmm/x"),
                                               h5::read_tensor(f, "/gmm/alpha"),
                                               h5::read_tensor(f, "/gmm/sigma"));
  EXPECT_TRUE(torch::allclose(got, h5::read_tensor(f, "/gmm/posterior_mean"), 1e-10, 1e-12))
      << got << h5::read_tensor(f, "/gmm/posterior_mean");
}

TEST(GaussianMixture, ExactSamplesHaveTheMixtureMoments) {
  const GaussianMixture gmm(torch::tensor({0.25, 0.75}), torch::tensor({{-1.0, 2.0}, {3.0, 0.0}}),
                            torch::tensor({{0.5, 0.5}, {1.0, 0.2}}));
  const torch::Tensor x = gmm.sample(40000, 1).to(torch::kFloat64);
  // Mean = sum w m = (2.0, 0.5); Var = sum w (s^2 + m^2) - mean^2 = (4.0 + ... ) per coordinate:
  // x: 0.25 (0.25 + 1) + 0.75 (1 + 9) - 4 = 3.8125; y: 0.25 (0.25 + 4) + 0.75 (0.04) - 0.25 = 0.8425.
  EXPECT_NEAR(x.mean(0)[0].item<double>(), 2.0, 0.04);
  EXPECT_NEAR(x.mean(0)[1].item<double>(), 0.5, 0.02);
  EXPECT_NEAR(x.var(0)[0].item<double>(), 3.8125, 0.08);
  EXPECT_NEAR(x.var(0)[1].item<double>(), 0.8425, 0.02);
}

TEST(GaussianMixture, FilesRoundTripAndBadFilesAreRefused) {
  testing::TempDir dir;
  const GaussianMixture gmm(torch::tensor({1.0, 3.0}), torch::zeros({2, 3}), torch::ones({2, 3}));
  gmm.save(dir / "g.h5");
  const GaussianMixture back = GaussianMixture::load(dir / "g.h5");
  EXPECT_TRUE(torch::allclose(back.weights, torch::tensor({0.25, 0.75}, torch::kFloat64)));
  EXPECT_THROW(GaussianMixture(torch::ones({2}), torch::zeros({2, 3}), torch::zeros({2, 3})), InputError);
  EXPECT_THROW(GaussianMixture(torch::ones({2}), torch::zeros({3, 3}), torch::ones({3, 3})), InputError);
  {
    h5::File f = h5::File::create(dir / "bad.h5");
    h5::write_tensor(f, "/weights", torch::ones({2}));
  }
  EXPECT_THROW(GaussianMixture::load(dir / "bad.h5"), InputError);
}

TEST(GaussianMixture, SingleGaussianOdeMapEqualsTheIntegratedOde) {
  // The closed-form probability-flow map must agree with integrating the ODE with the exact
  // denoiser (Heun, many steps), on two schedules.
  const GaussianMixture g(torch::ones({1}), torch::tensor({{1.0, -2.0}}), torch::tensor({{0.5, 0.8}}));
  for (const std::string name : {"ve", "rf"}) {
    const auto sch = objectives::Schedule::parse(name);
    const objectives::DenoiseFn denoise = [&](const torch::Tensor& x, double t) {
      return g.posterior_mean(x, torch::tensor(sch.alpha(t), torch::kFloat64),
                              torch::tensor(sch.sigma(t), torch::kFloat64));
    };
    const double t = name == "ve" ? 10.0 : 0.9;
    const torch::Tensor x = torch::randn({5, 2}, torch::kFloat64) * sch.sigma(t);
    const torch::Tensor numeric = objectives::ode_consistency(denoise, sch, 400)(x, t);
    const bool ve = name == "ve";
    torch::Tensor exact = g.ode_map(x, sch.alpha(t), sch.sigma(t), 1.0, ve ? sch.t_min : 0.0);
    if (ve) exact = denoise(exact, sch.t_min);  // ode_consistency ends with a final denoising
    EXPECT_TRUE(torch::allclose(numeric, exact, 1e-3, 1e-3)) << name << numeric << exact;
  }
}

}  // namespace
}  // namespace unidiff::models
