// Reward fine-tuning against closed forms and finite differences (objectives/reward/policy.h,
// experiments/reward/direct.h; FORMULAS.md section 6):
//  - the DDIM step as a policy: ddim_gaussian's Gaussian is the one the DDIM sampler records and
//    draws from, and its log-density is the product of the 1-D normal densities written out;
//  - PPO-clip: on the first pass (ratio 1) its gradient is REINFORCE's -A / N per log-probability,
//    a clipped ratio gives no gradient, and the estimator's expectation is the analytic gradient
//    of E r for a Gaussian policy (d/dtheta E[-(x - m)^2] = -2 (theta - m)); descent with the
//    batch-normalised advantages of RewardStats walks the policy to the reward's peak;
//  - RewardStats: the batch's population mean and std, per-class buffers after min_count, their
//    truncation, non-finite rewards left out, the state round trip; DRWR's clipped weights;
//  - ReFL, DRaFT-K: the loss's gradient in the network's weights against central differences in
//    float64 along a random direction; QSM's loss against the distance reward's gradient written
//    out (a unit vector towards the target).
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <numbers>

#include "core/rng.h"
#include "experiments/reward/direct.h"
#include "experiments/reward/rewards.h"
#include "models/network.h"
#include "objectives/reward/policy.h"
#include "objectives/sampling/ddim.h"
#include "objectives/sampling/ddpm.h"
#include "objectives/schedule.h"

namespace unidiff {
namespace {

namespace o = objectives;

torch::Tensor toy_eps(const torch::Tensor& x) { return 0.3 * x + 0.1 * torch::sin(x); }

TEST(RewardPolicy, TheDdimStepIsTheGaussianTheSamplerDrawsFrom) {
  const o::Schedule sch = o::Schedule::ddpm_schedule(o::BetaSchedule::kLinear, 1000);
  const int64_t b = 64;
  const double eta = 0.7;
  const torch::Tensor index = rng::arange_indices(0, b);
  const torch::Tensor x_T = rng::normal({5, rng::Purpose::kNoise}, 0, index, {2});
  const o::NoiseFn noise = [&](int64_t i) {
    return rng::normal({5, rng::Purpose::kNoise}, static_cast<uint64_t>(i + 1), index, {2});
  };
  o::DdpmSamplerOptions opts;
  opts.steps = 10;
  opts.spacing = o::Spacing::kTrailing;
  o::Trajectory tr;
  o::sample_ddim([](const torch::Tensor& x, const torch::Tensor&) { return toy_eps(x); }, sch.ddpm, x_T, opts, eta,
                 noise, &tr);
  ASSERT_EQ(tr.x.size(), 11u);
  int stochastic = 0;
  for (size_t i = 0; i < 10; ++i) {
    const torch::Tensor t = torch::full({b}, tr.t[i]), s = torch::full({b}, tr.t_next[i]);
    const o::DdimGaussian p = o::ddim_gaussian(sch, tr.x[i], toy_eps(tr.x[i]), t, s, eta);
    EXPECT_TRUE(torch::allclose(p.mean, tr.mean[i], 1e-5, 1e-5)) << "step " << i;
    EXPECT_NEAR(p.std[0].item<double>(), tr.std[i], 1e-6) << "step " << i;
    if (tr.std[i] == 0) {
      EXPECT_EQ(tr.t_next[i], -1) << "only the last step, to clean data, is deterministic";
      continue;
    }
    ++stochastic;
    // The sampler's next state is mean + std z with step i's noise.
    EXPECT_TRUE(torch::allclose(tr.x[i + 1], p.mean + tr.std[i] * noise(static_cast<int64_t>(i)), 1e-5, 1e-5));
    const torch::Tensor lp = o::gaussian_log_prob(tr.x[i + 1], p.mean, p.std);
    // The same density up to the float32 rounding of the two means (~1e-5 / std^2 here).
    EXPECT_TRUE(torch::allclose(lp, tr.log_prob[i], 0, 2e-4)) << "step " << i;
    // The density written out: the product over the two coordinates of exp(-z^2 / 2) / (s sqrt(2 pi)).
    const torch::Tensor z = (tr.x[i + 1] - p.mean).to(torch::kFloat64) / tr.std[i];
    const torch::Tensor want =
        (torch::exp(-0.5 * z * z) / (tr.std[i] * std::sqrt(2 * std::numbers::pi))).prod(1).log();
    EXPECT_TRUE(torch::allclose(lp, want, 1e-5, 1e-5)) << "step " << i;
  }
  EXPECT_EQ(stochastic, 9);
}

TEST(RewardPolicy, PpoFirstPassIsReinforceAndClippedRatiosStop) {
  const torch::Tensor adv = torch::tensor({1.5, -0.5, 2.0, -1.0}, torch::kFloat64);
  // Ratio 1 (logp == logp_old): d loss / d logp_i = -A_i / N.
  torch::Tensor logp = torch::tensor({-1.0, -2.0, -0.5, -3.0}, torch::dtype(torch::kFloat64).requires_grad(true));
  o::ppo_clip_loss(logp, logp.detach(), adv, 0.2).backward();
  EXPECT_TRUE(torch::allclose(logp.grad(), -adv / 4));
  // Ratios e^{0.5} > 1.2 for every sample: with A > 0 the clipped term wins (no gradient); with
  // A < 0 the unclipped -A rho is the larger and its gradient -A rho / N remains.
  torch::Tensor lp2 = torch::tensor({-0.5, -1.5, 0.0, -2.5}, torch::dtype(torch::kFloat64).requires_grad(true));
  const torch::Tensor old = torch::tensor({-1.0, -2.0, -0.5, -3.0}, torch::kFloat64);
  o::ppo_clip_loss(lp2, old, adv, 0.2).backward();
  const double rho = std::exp(0.5);
  const torch::Tensor want = torch::tensor({0.0, 0.5 * rho / 4, 0.0, 1.0 * rho / 4}, torch::kFloat64);
  EXPECT_TRUE(torch::allclose(lp2.grad(), want)) << lp2.grad();
  EXPECT_DOUBLE_EQ(o::clip_fraction(lp2.detach(), old, 0.2).item<double>(), 1.0);
  EXPECT_NEAR(o::approx_kl(lp2.detach(), old).item<double>(), 0.125, 1e-12);
}

TEST(RewardPolicy, ReinforceEstimatesTheGradientOfTheExpectedReward) {
  // Policy N(theta, s^2); r(x) = -(x - m)^2: E r = -(theta - m)^2 - s^2, dE r / dtheta = -2 (theta - m).
  const double m = 3.0, s = 0.5, theta0 = 1.0;
  const int64_t n = 400000;
  const torch::Tensor theta = torch::tensor(theta0, torch::dtype(torch::kFloat64).requires_grad(true));
  const torch::Tensor z = rng::normal({7, rng::Purpose::kNoise}, 0, rng::arange_indices(0, n), {1}).to(torch::kFloat64);
  const torch::Tensor x = (theta + s * z).detach();
  const torch::Tensor r = -(x - m).pow(2).sum(1);
  const torch::Tensor std = torch::full({n}, s, torch::kFloat64);
  const torch::Tensor logp = o::gaussian_log_prob(x, theta.expand({n, 1}), std);
  o::ppo_clip_loss(logp, logp.detach(), r, 1e-4).backward();
  // The loss is -E[A rho]: its gradient is minus the policy gradient. Monte Carlo: the estimator's
  // std is about 4.3 / sqrt(n) ~ 0.007 here.
  EXPECT_NEAR(theta.grad().item<double>(), 2 * (theta0 - m), 0.03);
}

TEST(RewardPolicy, PpoWithNormalisedAdvantagesClimbsTheReward) {
  const double m = 3.0, s = 0.5;
  torch::Tensor theta = torch::zeros({}, torch::dtype(torch::kFloat64).requires_grad(true));
  o::RewardStats stats(32, 16);
  const int64_t n = 256;
  for (int64_t epoch = 0; epoch < 150; ++epoch) {
    const torch::Tensor z =
        rng::normal({8, rng::Purpose::kNoise}, static_cast<uint64_t>(epoch), rng::arange_indices(0, n), {1})
            .to(torch::kFloat64);
    const torch::Tensor x = (theta.detach() + s * z);
    const torch::Tensor adv = stats.update(-(x - m).pow(2).sum(1), torch::Tensor());
    const torch::Tensor logp = o::gaussian_log_prob(x, theta.expand({n, 1}), torch::full({n}, s, torch::kFloat64));
    o::ppo_clip_loss(logp, logp.detach(), adv, 0.2).backward();
    {
      torch::NoGradGuard g;
      theta -= 0.05 * theta.grad();
      theta.grad().zero_();
    }
  }
  EXPECT_NEAR(theta.item<double>(), m, 0.1);
}

TEST(RewardPolicy, RewardStatisticsPerClassAndBatch) {
  o::RewardStats stats(/*buffer=*/3, /*min_count=*/2);
  // Unconditional: (r - mean) / (population std + 1e-6).
  const torch::Tensor r = torch::tensor({1.0, 2.0, 3.0, 6.0}, torch::kFloat64);
  const double mean = 3.0, sd = std::sqrt((4.0 + 1.0 + 0.0 + 9.0) / 4);
  EXPECT_TRUE(torch::allclose(stats.update(r, torch::Tensor()), (r - mean) / (sd + 1e-6)));
  // Class 0 gets three rewards (enough: its own statistics), class 1 one (the batch's); a NaN is
  // left out of both and gets advantage 0.
  const torch::Tensor r2 = torch::tensor({1.0, 3.0, 5.0, 10.0, std::nan("")}, torch::kFloat64);
  const torch::Tensor l2 = torch::tensor({0, 0, 0, 1, 1}, torch::kInt64);
  const torch::Tensor a2 = stats.update(r2, l2);
  const double sd0 = std::sqrt(8.0 / 3);
  const double bm = 19.0 / 4, bs = std::sqrt(((1 - bm) * (1 - bm) + (3 - bm) * (3 - bm) + (5 - bm) * (5 - bm) +
                                              (10 - bm) * (10 - bm)) / 4);
  EXPECT_NEAR(a2[0].item<double>(), (1 - 3) / (sd0 + 1e-6), 1e-9);
  EXPECT_NEAR(a2[2].item<double>(), (5 - 3) / (sd0 + 1e-6), 1e-9);
  EXPECT_NEAR(a2[3].item<double>(), (10 - bm) / (bs + 1e-6), 1e-9);
  EXPECT_EQ(a2[4].item<double>(), 0.0);
  // The buffer keeps the last 3 of class 0: {3, 5, 7} after adding 7.
  const torch::Tensor a3 = stats.update(torch::tensor({7.0}, torch::kFloat64), torch::tensor({0}, torch::kInt64));
  EXPECT_NEAR(a3[0].item<double>(), (7 - 5) / (std::sqrt(8.0 / 3) + 1e-6), 1e-9);
  // The state round trip gives the same advantages.
  o::RewardStats copy(3, 2);
  const auto [classes, rewards] = stats.state();
  copy.set_state(classes, rewards);
  EXPECT_TRUE(torch::allclose(copy.advantages(r2, l2), stats.advantages(r2, l2)));
  // DRWR: exp(r / beta) clipped.
  EXPECT_TRUE(torch::allclose(o::rwr_weights(torch::tensor({0.0, 1.0, 10.0}, torch::kFloat64), 2.0, 5.0),
                              torch::tensor({1.0, std::exp(0.5), 5.0}, torch::kFloat64)));
}

/// A small eps-prediction MLP in float64 and its DDPM tables.
struct TinyPolicy {
  std::shared_ptr<models::Network> net;
  experiments::Teacher model;
};

TinyPolicy tiny_policy() {
  torch::manual_seed(11);
  models::NetworkConfig c;
  c.data_shape = {2};
  c.hidden = 16;
  c.layers = 2;
  c.time_dim = 8;
  TinyPolicy p;
  p.net = models::make_network(c);
  p.net->to(torch::kFloat64);
  p.model.prediction = o::Prediction::kEps;
  p.model.schedule = o::Schedule::ddpm_schedule(o::BetaSchedule::kLinear, 1000);
  p.model.model.network = c;
  return p;
}

/// <grad, v> of the loss `f` against the central difference along v (a keyed direction in the
/// parameters) of `value` (default: f itself).
void expect_gradient(models::Network& net, const std::function<torch::Tensor()>& f,
                     std::function<torch::Tensor()> value = {}) {
  if (!value) value = f;
  const auto params = net.parameters();
  std::vector<torch::Tensor> v;
  for (size_t i = 0; i < params.size(); ++i) {
    v.push_back(rng::normal({9, rng::Purpose::kNoise}, i, rng::arange_indices(0, params[i].numel()), {1})
                    .to(torch::kFloat64)
                    .view(params[i].sizes()));
  }
  for (auto& p : params) p.mutable_grad() = torch::Tensor();
  f().backward();
  double analytic = 0;
  for (size_t i = 0; i < params.size(); ++i) analytic += (params[i].grad() * v[i]).sum().item<double>();
  const double h = 1e-6;
  const auto shift = [&](double by) {
    torch::NoGradGuard g;
    for (size_t i = 0; i < params.size(); ++i) params[i].add_(by * v[i]);
  };
  double plus = 0, minus = 0;
  {
    shift(h);
    torch::NoGradGuard g;
    plus = value().item<double>();
  }
  {
    shift(-2 * h);
    torch::NoGradGuard g;
    minus = value().item<double>();
  }
  shift(h);
  const double numeric = (plus - minus) / (2 * h);
  EXPECT_NEAR(analytic, numeric, 1e-6 * std::max(1.0, std::abs(numeric))) << analytic << " vs " << numeric;
  EXPECT_GT(std::abs(analytic), 1e-4) << "a gradient this small checks nothing";
}

experiments::Reward distance_reward(const torch::Tensor& target) {
  experiments::RewardConfig rc;
  rc.name = "distance";
  rc.target = {target[0].item<double>(), target[1].item<double>()};
  return experiments::make_reward(rc, {2}, torch::kCPU);
}

TEST(RewardGradients, ReflAndDraftMatchFiniteDifferences) {
  TinyPolicy p = tiny_policy();
  const experiments::Reward reward = distance_reward(torch::tensor({2.0, 0.5}));
  const int64_t b = 16;
  const torch::Tensor index = rng::arange_indices(0, b);
  const torch::Tensor x_T = rng::normal({4, rng::Purpose::kNoise}, 0, index, {2}).to(torch::kFloat64);
  const o::NoiseFn noise = [&](int64_t i) {
    return rng::normal({4, rng::Purpose::kNoise}, static_cast<uint64_t>(i + 1), index, {2}).to(torch::kFloat64);
  };
  const std::vector<int64_t> times = experiments::chain_times(p.model, 6);
  ASSERT_EQ(times.size(), 6u);
  // ReFL at the chain's state before step 4 (its time times[4]).
  torch::Tensor x4;
  {
    torch::NoGradGuard g;
    x4 = experiments::chain(*p.net, p.model, x_T, times, 0, 4, 1.0, noise, torch::Tensor());
  }
  expect_gradient(*p.net, [&] {
    return experiments::refl_loss(*p.net, p.model, x4, times[4], torch::Tensor(), reward, 0.7);
  });
  // DRaFT-1 and DRaFT-3 (eta 1: the steps' noise is fixed by its keys): the gradient of the last
  // K steps with the state before them held fixed (the truncated backpropagation).
  for (int64_t k : {1, 3}) {
    torch::Tensor start;
    {
      torch::NoGradGuard g;
      start = experiments::chain(*p.net, p.model, x_T, times, 0, 6 - k, 1.0, noise, torch::Tensor());
    }
    expect_gradient(
        *p.net,
        [&] { return experiments::draft_loss(*p.net, p.model, x_T, times, k, 1.0, noise, torch::Tensor(), reward, 1.3); },
        [&] {
          const torch::Tensor x0 = experiments::chain(*p.net, p.model, start, times, 6 - k, 6, 1.0, noise, {});
          return -1.3 * reward.fn(x0, {}).mean();
        });
  }
}

TEST(RewardGradients, DraftWithAllStepsIsTheWholeChainsGradient) {
  // K = all steps: the loss is -lambda r of the chain run with gradients from x_T.
  TinyPolicy p = tiny_policy();
  const experiments::Reward reward = distance_reward(torch::tensor({-1.0, 1.0}));
  const torch::Tensor index = rng::arange_indices(0, 8);
  const torch::Tensor x_T = rng::normal({6, rng::Purpose::kNoise}, 0, index, {2}).to(torch::kFloat64);
  const o::NoiseFn noise = [&](int64_t i) {
    return rng::normal({6, rng::Purpose::kNoise}, static_cast<uint64_t>(i + 1), index, {2}).to(torch::kFloat64);
  };
  const std::vector<int64_t> times = experiments::chain_times(p.model, 4);
  const torch::Tensor a = experiments::draft_loss(*p.net, p.model, x_T, times, 4, 0.5, noise, {}, reward, 1.0);
  const torch::Tensor x0 = experiments::chain(*p.net, p.model, x_T, times, 0, 4, 0.5, noise, {});
  EXPECT_NEAR(a.item<double>(), -reward.fn(x0, {}).mean().item<double>(), 1e-12);
}

TEST(RewardGradients, CheckpointedDraftHasTheSameGradients) {
  TinyPolicy p = tiny_policy();
  const experiments::Reward reward = distance_reward(torch::tensor({2.0, 0.5}));
  const torch::Tensor index = rng::arange_indices(0, 12);
  const torch::Tensor x_T = rng::normal({2, rng::Purpose::kNoise}, 0, index, {2}).to(torch::kFloat64);
  const o::NoiseFn noise = [&](int64_t i) {
    return rng::normal({2, rng::Purpose::kNoise}, static_cast<uint64_t>(i + 1), index, {2}).to(torch::kFloat64);
  };
  const std::vector<int64_t> times = experiments::chain_times(p.model, 8);
  const auto params = p.net->parameters();
  const auto grads = [&] {
    std::vector<torch::Tensor> g;
    for (auto& q : params) {
      g.push_back(q.grad().clone());
      q.mutable_grad() = torch::Tensor();
    }
    return g;
  };
  const torch::Tensor plain = experiments::draft_loss(*p.net, p.model, x_T, times, 5, 1.0, noise, {}, reward, 0.9);
  plain.backward();
  const auto want = grads();
  int passes = 0, last = 0;
  const torch::Tensor ckpt = experiments::draft_backward_checkpointed(
      *p.net, p.model, x_T, times, 5, 1.0, noise, {}, reward, 0.9, index, [&](bool is_last) {
        ++passes;
        last += is_last;
      });
  const auto got = grads();
  EXPECT_NEAR(ckpt.item<double>(), plain.item<double>(), 1e-14);
  EXPECT_EQ(passes, 5);
  EXPECT_EQ(last, 1);
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_TRUE(torch::allclose(got[i], want[i], 1e-10, 1e-12)) << "parameter " << i;
  }
}

TEST(RewardGradients, QsmMatchesTheScoreToTheRewardGradient) {
  TinyPolicy p = tiny_policy();
  const torch::Tensor target = torch::tensor({2.0, 0.5}, torch::kFloat64);
  const experiments::Reward reward = distance_reward(target);
  const int64_t b = 32;
  const torch::Tensor x_t = rng::normal({3, rng::Purpose::kNoise}, 0, rng::arange_indices(0, b), {2}).to(torch::kFloat64);
  const torch::Tensor t = torch::linspace(10, 900, b, torch::kFloat64);
  const double alpha = 0.8;
  const torch::Tensor loss = experiments::qsm_loss(*p.net, p.model, x_t, t, {}, reward, alpha);
  // r = -||x - target||: grad r = -(x - target) / ||x - target||; the loss is the mean of
  // (eps_theta + sigma_t alpha grad r)^2, sigma_t = sqrt(1 - abar_t).
  const torch::Tensor d = x_t - target;
  const torch::Tensor g = -d / d.norm(2, 1, true);
  torch::Tensor sigma = torch::empty({b, 1}, torch::kFloat64);
  for (int64_t i = 0; i < b; ++i) {
    const double a = p.model.schedule.alpha(t[i].item<double>());
    sigma[i][0] = std::sqrt(1 - a * a);
  }
  torch::Tensor eps;
  {
    torch::NoGradGuard ng;
    eps = p.net->forward(x_t, t);
  }
  const double want = (eps + sigma * alpha * g).pow(2).mean().item<double>();
  EXPECT_NEAR(loss.item<double>(), want, 1e-9 * std::max(1.0, want));
}

}  // namespace
}  // namespace unidiff
