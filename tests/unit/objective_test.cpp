// The pre-training objectives (experiments/pretrain/objectives.h) and their math (objectives/pretrain/consistency.h,
// objectives/jvp.h) against closed forms: the iCT curriculum, grid and interval weights, the
// pseudo-Huber distance, TrigFlow's time map, the sCM target against a finite-difference df/dt,
// forward-mode JVPs against analytic derivatives and finite differences, and every denoising
// objective's loss minimised by the exact posterior of Gaussian data (the analytic oracle), which
// pins each objective's input scaling, time input and target convention.
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

#include "core/error.h"
#include "core/rng.h"
#include "experiments/pretrain/objectives.h"
#include "models/network.h"
#include "objectives/pretrain/consistency.h"
#include "objectives/ddpm_schedule.h"
#include "objectives/jvp.h"
#include "objectives/schedule.h"
#include "models/group_norm_act.h"
#include "models/keyed_dropout.h"
#include "models/unet.h"
#include "test_util.h"

namespace unidiff::experiments {
namespace {

namespace o = objectives;

TEST(Consistency, CurriculumDoublesInEqualStages) {
  // K = 3000, s0 = 10, s1 = 1280: log2(128) + 1 = 8 stages of K' = 375 steps.
  EXPECT_EQ(o::ict_intervals(0, 3000), 10);
  EXPECT_EQ(o::ict_intervals(374, 3000), 10);
  EXPECT_EQ(o::ict_intervals(375, 3000), 20);
  EXPECT_EQ(o::ict_intervals(2624, 3000), 640);
  EXPECT_EQ(o::ict_intervals(2625, 3000), 1280);
  EXPECT_EQ(o::ict_intervals(2999, 3000), 1280);
  EXPECT_EQ(o::ict_intervals(10, 5, 10, 1280), 1280);  // a run shorter than the stages
  EXPECT_THROW(o::ict_intervals(0, 10, 20, 10), unidiff::InputError);
}

TEST(Consistency, CurriculumReachesS1ForAnyRatio) {
  // s1 / s0 not a power of two: 10 -> 1000 takes D = 7 doublings (10 2^7 = 1280 >= 1000), 8 stages
  // of 375 steps, the last clamped to s1 (iCT's floor(log2(100)) = 6 would end at 640).
  EXPECT_EQ(o::ict_intervals(2624, 3000, 10, 1000), 640);
  EXPECT_EQ(o::ict_intervals(2625, 3000, 10, 1000), 1000);
  for (int64_t s0 : std::vector<int64_t>{1, 2, 3, 7, 10, 17}) {
    for (int64_t s1 : std::vector<int64_t>{s0, s0 + 1, 2 * s0, 3 * s0, 100, 150, 1000, 1280}) {
      if (s1 < s0) continue;
      int64_t prev = 0;
      for (int64_t k = 0; k < 1000; ++k) {
        const int64_t n = o::ict_intervals(k, 1000, s0, s1);
        ASSERT_GE(n, prev);
        ASSERT_TRUE(n == prev || prev == 0 || n == 2 * prev || n == s1) << s0 << " " << s1 << " " << k;
        prev = n;
      }
      EXPECT_EQ(prev, s1) << "s0 " << s0 << ", s1 " << s1;
      EXPECT_EQ(o::ict_intervals(0, 1000, s0, s1), s0);
    }
  }
}

TEST(Consistency, KarrasGridMatchesTheScheduleGrid) {
  const torch::Tensor s = o::karras_sigmas(16, 0.002, 80);
  const std::vector<double> g = o::Schedule::ve(0.002, 80).time_grid(16);  // decreasing
  ASSERT_EQ(s.size(0), 17);
  for (int64_t i = 0; i <= 16; ++i) {
    EXPECT_NEAR(s[i].item<double>(), g[static_cast<size_t>(16 - i)], 1e-12 * g[static_cast<size_t>(16 - i)]);
  }
}

TEST(Consistency, IntervalWeightsAreTheLognormalMass) {
  const torch::Tensor s = o::karras_sigmas(10, 0.002, 80);
  const torch::Tensor p = o::ict_interval_probs(s, -1.1, 2.0);
  double total = 0;
  std::vector<double> raw;
  for (int64_t i = 0; i < 10; ++i) {
    const auto cdf = [](double sigma) { return std::erf((std::log(sigma) + 1.1) / (std::sqrt(2.0) * 2.0)); };
    raw.push_back(cdf(s[i + 1].item<double>()) - cdf(s[i].item<double>()));
    total += raw.back();
  }
  for (int64_t i = 0; i < 10; ++i) EXPECT_NEAR(p[i].item<double>(), raw[static_cast<size_t>(i)] / total, 1e-12);
  // Inverse CDF: u just below / at a cumulative boundary picks the interval / the next one.
  const torch::Tensor cdf = p.cumsum(0);
  const double c0 = cdf[0].item<double>(), c3 = cdf[3].item<double>();
  const torch::Tensor u = torch::tensor({0.0, c0 - 1e-9, c0 + 1e-9, c3 - 1e-9, 0.999999999}, torch::kFloat64);
  const torch::Tensor idx = o::sample_intervals(p, u);
  EXPECT_EQ(idx[0].item<int64_t>(), 0);
  EXPECT_EQ(idx[1].item<int64_t>(), 0);
  EXPECT_EQ(idx[2].item<int64_t>(), 1);
  EXPECT_EQ(idx[3].item<int64_t>(), 3);
  EXPECT_EQ(idx[4].item<int64_t>(), 9);
}

TEST(Consistency, PseudoHuberAndTrigflowTime) {
  const torch::Tensor a = torch::tensor({{3.0, 4.0}, {1.0, 1.0}}, torch::kFloat64);
  const torch::Tensor b = torch::tensor({{0.0, 0.0}, {1.0, 1.0}}, torch::kFloat64);
  const torch::Tensor d = o::pseudo_huber(a, b, 0.5);
  EXPECT_NEAR(d[0].item<double>(), std::sqrt(25.25) - 0.5, 1e-12);
  EXPECT_NEAR(d[1].item<double>(), 0.0, 1e-15);
  EXPECT_NEAR(o::ict_huber_c(3 * 32 * 32), 0.00054 * std::sqrt(3072.0), 1e-15);
  // tan t = e^tau / sigma_d: tau = ln sigma_d gives t = pi / 4.
  const torch::Tensor t = o::trigflow_time(torch::tensor({std::log(0.5), 50.0}, torch::kFloat64), 0.5);
  EXPECT_NEAR(t[0].item<double>(), std::numbers::pi / 4, 1e-12);
  EXPECT_NEAR(t[1].item<double>(), std::numbers::pi / 2, 1e-12);
}

/// An analytic "network" F(x_in, t_in) = sin(x_in) * cos(t_in / 1000) + 0.3 x_in^2 t_in / 1000.
torch::Tensor analytic_F(const torch::Tensor& x_in, const torch::Tensor& t_in) {
  const torch::Tensor tt = (t_in / 1000.0).view({-1, 1});
  return torch::sin(x_in) * torch::cos(tt) + 0.3 * x_in.pow(2) * tt;
}

TEST(Jvp, ForwardModeMatchesTheAnalyticDerivative) {
  const torch::Tensor x = torch::randn({5, 3}, torch::kFloat64), t = torch::rand({5}, torch::kFloat64) * 1500;
  const torch::Tensor vx = torch::randn({5, 3}, torch::kFloat64), vt = torch::randn({5}, torch::kFloat64) * 1000;
  const o::TensorFn f = [](const std::vector<torch::Tensor>& in) { return analytic_F(in[0], in[1]); };
  const auto [y, dy] = o::jvp_forward_ad(f, {x, t}, {vx, vt});
  const torch::Tensor tt = (t / 1000).view({-1, 1}), dt = (vt / 1000).view({-1, 1});
  const torch::Tensor expect = torch::cos(x) * vx * torch::cos(tt) - torch::sin(x) * torch::sin(tt) * dt +
                               0.6 * x * vx * tt + 0.3 * x.pow(2) * dt;
  EXPECT_TRUE(torch::allclose(y, analytic_F(x, t), 1e-12, 1e-12));
  EXPECT_TRUE(torch::allclose(dy, expect, 1e-10, 1e-12)) << (dy - expect).abs().max();
  const auto [y2, dy2] = o::jvp_finite_difference(f, {x, t}, {vx, vt}, 1e-5);
  EXPECT_TRUE(torch::allclose(dy2, expect, 1e-6, 1e-6)) << (dy2 - expect).abs().max();
}

TEST(Jvp, ForwardModeThroughTheMlpMatchesFiniteDifferences) {
  models::NetworkConfig cfg;
  cfg.data_shape = {2};
  cfg.hidden = 32;
  cfg.layers = 2;
  torch::manual_seed(3);
  auto net = models::make_network(cfg);
  net->to(torch::kFloat64);
  const torch::Tensor x = torch::randn({7, 2}, torch::kFloat64), t = torch::rand({7}, torch::kFloat64) * 1000;
  const torch::Tensor vx = torch::randn({7, 2}, torch::kFloat64), vt = torch::full({7}, 1000.0, torch::kFloat64);
  const o::TensorFn f = [&](const std::vector<torch::Tensor>& in) { return net->forward(in[0], in[1]); };
  const auto [y, dy] = o::jvp_forward_ad(f, {x, t}, {vx, vt});
  const auto [y2, dy2] = o::jvp_finite_difference(f, {x, t}, {vx, vt}, 1e-6);
  EXPECT_GT(dy.abs().max().item<double>(), 1e-3);  // a real derivative, not a zero tangent
  EXPECT_TRUE(torch::allclose(dy, dy2, 1e-5, 1e-7)) << (dy - dy2).abs().max();
  EXPECT_FALSE(y.requires_grad());
}

TEST(Scm, TargetIsCosTTimesTheTotalDerivativeOfF) {
  // Along x_t = cos t x0 + sin t z, f(t) = cos t x_t - sin t sd F(x_t / sd, 1000 t); the target
  // direction is cos t * df/dt, normalised. df/dt here by central differences in t.
  const double sd = 0.7;
  const torch::Tensor x0 = torch::randn({4, 3}, torch::kFloat64), z = sd * torch::randn({4, 3}, torch::kFloat64);
  const torch::Tensor t = torch::tensor({0.3, 0.8, 1.2, 1.5}, torch::kFloat64);
  auto col = [](const torch::Tensor& v) { return v.view({-1, 1}); };
  auto x_at = [&](const torch::Tensor& tt) { return torch::cos(col(tt)) * x0 + torch::sin(col(tt)) * z; };
  auto f_at = [&](const torch::Tensor& tt) {
    const torch::Tensor x = x_at(tt);
    return torch::cos(col(tt)) * x - torch::sin(col(tt)) * sd * analytic_F(x / sd, tt * 1000);
  };
  const double h = 1e-6;
  const torch::Tensor dfdt = (f_at(t + h) - f_at(t - h)) / (2 * h);
  const torch::Tensor x_t = x_at(t), v_t = torch::cos(col(t)) * z - torch::sin(col(t)) * x0;
  const o::TensorFn Ffn = [](const std::vector<torch::Tensor>& in) { return analytic_F(in[0], in[1]); };
  const auto [F, dF] = o::jvp_forward_ad(Ffn, {x_t / sd, t * 1000}, {v_t / sd, torch::full_like(t, 1000.0)});
  const torch::Tensor g = o::scm_target_direction(x_t, t, F, dF, v_t, sd, torch::tensor(1.0), 0.1);
  const torch::Tensor want = torch::cos(col(t)) * dfdt;
  const torch::Tensor want_n = want / (want.norm(2, 1, true) + 0.1);
  EXPECT_TRUE(torch::allclose(g, want_n, 1e-6, 1e-8)) << (g - want_n).abs().max();
  // The warm-up scales only the second term: r = 0 leaves -cos^2 t (sd F - v_t).
  const torch::Tensor g0 = o::scm_target_direction(x_t, t, F, dF, v_t, sd, torch::tensor(0.0), 0.0);
  const torch::Tensor w0 = -torch::cos(col(t)).pow(2) * (sd * F - v_t);
  EXPECT_TRUE(torch::allclose(g0, w0 / w0.norm(2, 1, true), 1e-10, 1e-12));
}

/// A network computing a fixed function of its inputs, scaled by `scale`.
class FnNet : public models::Network {
 public:
  explicit FnNet(std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&)> fn) : fn_(std::move(fn)) {
    register_parameter("unused", torch::zeros({1}));
  }
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t) override { return scale * fn_(x, t); }
  double scale = 1.0;

 private:
  std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&)> fn_;
};

// Gaussian data x0 ~ N(0, s^2 I): at x_t = a x0 + b eps, E[x0 | x_t] = a s^2 x_t / v and
// E[eps | x_t] = b x_t / v with v = a^2 s^2 + b^2.
constexpr double kS = 0.7;

/// The exact minimiser of each objective's loss, as a function of the network's own inputs.
std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&)> oracle(const DiffusionConfig& c,
                                                                                const o::DdpmSchedule& tables) {
  const double s2 = kS * kS, sd = c.sigma_d;
  auto col = [](const torch::Tensor& v) { return v.view({-1, 1}); };
  switch (resolve_objective(c)) {
    case Objective::kDdpm:
      return [=](const torch::Tensor& x, const torch::Tensor& t) {  // eps-prediction, integer t
        const torch::Tensor ab = col(tables.alpha_bars.index_select(0, t.to(torch::kInt64))).to(x.dtype());
        return (1 - ab).sqrt() * x / (ab * s2 + 1 - ab);
      };
    case Objective::kRf:
      return [=](const torch::Tensor& x, const torch::Tensor& tin) {  // u = E[eps - x0], time 1000 t
        const torch::Tensor t = col(tin / 1000.0), a = 1 - t;
        return (t - a * s2) * x / (a * a * s2 + t * t);
      };
    case Objective::kNcsn:
      return [=](const torch::Tensor& xin, const torch::Tensor& tin) {  // eps, from c_in x, 250 ln sigma
        const torch::Tensor sg = col((tin / 250.0).exp());
        const torch::Tensor x = xin * (sg * sg + sd * sd).sqrt();
        return sg * x / (s2 + sg * sg);
      };
    case Objective::kTrigflow:
      return [=](const torch::Tensor& xin, const torch::Tensor& tin) {  // F = E[v_t] / sd, from x / sd, t
        const torch::Tensor t = col(tin), co = torch::cos(t), si = torch::sin(t);
        const torch::Tensor x = xin * sd, v = co * co * s2 + si * si * sd * sd;
        const torch::Tensor e_eps = si * sd * x / v, e_x0 = co * s2 * x / v;
        return (co * sd * e_eps - si * e_x0) / sd;
      };
    default:
      return nullptr;
  }
}

TEST(Objectives, EachLossIsMinimisedByTheExactPosteriorOfGaussianData) {
  const int64_t B = 40000;
  const torch::Tensor x0 = kS * torch::randn({B, 2});
  const torch::Tensor index = torch::arange(B, torch::kInt64);
  for (const std::string name : {"ddpm", "rf", "ncsn", "trigflow"}) {
    DiffusionConfig c;
    c.objective = name;
    c.sigma_min = 0.01;
    c.sigma_max = 10;
    c.sigma_d = 0.9;
    if (name == "rf") c.prediction = "rf-velocity";
    c = resolve_diffusion(c);
    const o::DdpmSchedule tables = o::DdpmSchedule::make(o::BetaSchedule::kLinear, 1000);
    FnNet net(oracle(c, tables));
    auto objective = make_pretrain_objective(c, {7, 100, {2}, torch::kCPU});
    objective->prepare(3);
    auto loss_at = [&](double scale) {
      net.scale = scale;
      return objective->loss(net, {x0, index, {}, 3}).loss.item<double>();
    };
    const double best = loss_at(1.0);
    EXPECT_LT(best, loss_at(0.95)) << name;
    EXPECT_LT(best, loss_at(1.05)) << name;
    EXPECT_GT(best, 0.0) << name;
    // The same oracle through model_functions is the exact posterior mean E[x0 | x_t].
    if (name == "ddpm") continue;
    net.scale = 1.0;
    const ModelFunctions fns = model_functions(c, [&](const torch::Tensor& x, const torch::Tensor& t) {
      return net.forward(x, t);
    });
    const torch::Tensor x = torch::randn({16, 2});
    for (double t : {fns.schedule.t_min + 0.05, 0.5 * (fns.schedule.t_min + fns.schedule.t_max), fns.schedule.t_max}) {
      const double a = fns.schedule.alpha(t), b = fns.schedule.sigma(t);
      const torch::Tensor want = a * kS * kS * x / (a * a * kS * kS + b * b);
      EXPECT_TRUE(torch::allclose(fns.denoise(x, t), want, 1e-4, 1e-5)) << name << " at t = " << t;
    }
  }
}

TEST(Objectives, ConsistencyFunctionsKeepTheBoundary) {
  // ict: f(x, sigma_min) = x (c_skip = 1, c_out = 0) whatever the network; scm: f(x, 0) = x.
  FnNet net([](const torch::Tensor& x, const torch::Tensor&) { return 5 * x + 1; });
  const NetFn fn = [&](const torch::Tensor& x, const torch::Tensor& t) { return net.forward(x, t); };
  const torch::Tensor x = torch::randn({8, 2});
  for (const std::string name : {"ict", "scm"}) {
    DiffusionConfig c;
    c.objective = name;
    const ModelFunctions fns = model_functions(resolve_diffusion(c), fn);
    ASSERT_TRUE(static_cast<bool>(fns.consistency)) << name;
    EXPECT_FALSE(static_cast<bool>(fns.denoise)) << name;
    EXPECT_TRUE(torch::allclose(fns.consistency(x, fns.schedule.t_min), x, 1e-5, 1e-6)) << name;
    EXPECT_FALSE(torch::allclose(fns.consistency(x, 1.0), x, 1e-2, 1e-2)) << name;
  }
}

TEST(Objectives, StepsAreKeyedPerSample) {
  // The loss of a batch is the mean of its halves' losses: every draw is keyed by the sample, not
  // by its position in the batch (what makes a step the same on any number of ranks).
  FnNet net([](const torch::Tensor& x, const torch::Tensor& t) { return torch::sin(x) * (t.view({-1, 1}) / 1000); });
  const torch::Tensor x0 = torch::randn({64, 2});
  const torch::Tensor index = torch::arange(100, 164, torch::kInt64);
  for (const std::string name : {"ddpm", "rf", "ncsn", "trigflow", "ict", "scm"}) {
    DiffusionConfig c;
    c.objective = name;
    c = resolve_diffusion(c);
    auto objective = make_pretrain_objective(c, {11, 1000, {2}, torch::kCPU});
    objective->prepare(5);
    const double whole = objective->loss(net, {x0, index, {}, 5}).loss.item<double>();
    const double a = objective->loss(net, {x0.slice(0, 0, 32), index.slice(0, 0, 32), {}, 5}).loss.item<double>();
    const double b = objective->loss(net, {x0.slice(0, 32), index.slice(0, 32), {}, 5}).loss.item<double>();
    EXPECT_NEAR(whole, (a + b) / 2, 1e-5 * std::abs(whole) + 1e-7) << name;
    objective->prepare(6);
    const double other = objective->loss(net, {x0, index, {}, 6}).loss.item<double>();
    EXPECT_NE(whole, other) << name << ": step 6 draws the same numbers as step 5";
    // A step counter tensor (what a captured CUDA graph advances) keys the draws instead of the
    // host step number the graph was captured at.
    StepData counted{x0, index, {}, 5};
    counted.step_counter = torch::tensor(int64_t{6});
    EXPECT_EQ(objective->loss(net, counted).loss.item<double>(), other) << name;
  }
}

TEST(Objectives, BadSettingsAreRefused) {
  DiffusionConfig c;
  c.objective = "nope";
  EXPECT_THROW(resolve_diffusion(c), unidiff::InputError);
  c.objective = "ict";
  c.sigma_min = 5;
  c.sigma_max = 1;
  EXPECT_THROW(resolve_diffusion(c), unidiff::InputError);
  c = DiffusionConfig();
  c.objective = "scm";
  c.jvp = "magic";
  EXPECT_THROW(resolve_diffusion(c), unidiff::InputError);
  c = DiffusionConfig();
  c.objective = "ncsn";
  c.reflow = true;
  EXPECT_THROW(resolve_diffusion(c), unidiff::InputError);  // reflow needs rf or ddpm
  c = DiffusionConfig();
  c.prediction = "instaflow";
  c.rf_time = "logit-normal";
  EXPECT_THROW(resolve_diffusion(c), unidiff::InputError);  // ddpm: uniform or one
  c = DiffusionConfig();
  c.objective = "ddpm";
  c.prediction = "rf-velocity";
  EXPECT_THROW(resolve_diffusion(c), unidiff::InputError);
  // Defaults of the log-normal proposals.
  c = DiffusionConfig();
  c.objective = "scm";
  EXPECT_EQ(resolve_diffusion(c).p_mean, -1.0);
  EXPECT_EQ(resolve_diffusion(c).p_std, 1.4);
  c.objective = "ict";
  EXPECT_EQ(resolve_diffusion(c).p_mean, -1.1);
  c = DiffusionConfig();
  c.schedule = "rf";
  c.prediction = "rf-velocity";
  EXPECT_EQ(resolve_diffusion(c).objective, "rf");
}

}  // namespace
}  // namespace unidiff::experiments

namespace unidiff::objectives {
namespace {

TEST(SampleDdimAny, GaussianDataIsReproducedOnEverySchedule) {
  // Gaussian data N(0, s^2 I) with its exact denoiser: deterministic (eta 0) and ancestral (eta 1)
  // DDIM over 1000 steps end at variance s^2 on the ve, rf and trigflow schedules (ancestral
  // steps with the posterior mean lose the posterior's variance: -5% at 200 Karras steps on ve).
  const double s = 0.7;
  const int64_t n = 20000;
  for (const std::string name : {"ve", "rf", "trigflow"}) {
    Schedule sch = Schedule::parse(name);
    if (name == "ve") sch = Schedule::ve(0.01, 20);
    if (name == "trigflow") sch.t_max = std::atan(80 / sch.sigma_d);
    const DenoiseFn denoise = [&](const torch::Tensor& x, double t) {
      const double a = sch.alpha(t), b = sch.sigma(t);
      return a * s * s * x / (a * a * s * s + b * b);
    };
    const torch::Tensor idx = rng::arange_indices(0, n);
    const NoiseFn noise = [&](int64_t i) {
      return rng::normal({5, rng::Purpose::kSampling}, static_cast<uint64_t>(i + 1), idx, {2}).to(torch::kFloat64);
    };
    const torch::Tensor x_T = sch.sigma(sch.t_max) * rng::normal({5, rng::Purpose::kSampling}, 0, idx, {2}).to(torch::kFloat64);
    for (double eta : {0.0, 1.0}) {
      const torch::Tensor x = sample_ddim_any(denoise, sch, x_T, 1000, eta, noise);
      const double var = x.var().item<double>();
      EXPECT_NEAR(var, s * s, 0.04 * s * s) << name << " eta " << eta;
    }
  }
  EXPECT_THROW(sample_ddim_any({}, Schedule::rf(), torch::zeros({1, 2}), 4, 1.5, {}), unidiff::InputError);
}

}  // namespace
}  // namespace unidiff::objectives

namespace unidiff::experiments {
namespace {

TEST(Objectives, ScmThroughTheFusedGroupNormEqualsTheComposite) {
  // sCM's forward-mode JVP meets the fused GroupNorm (and on CUDA the fused keyed dropout), whose
  // autograd functions have no forward-mode rule: dual inputs take the composite operations. On
  // the CPU the fused path is the kernels' block program, so this is the GPU run's code path: the
  // loss and every gradient equal those of the composite network (to the block program's rounding).
  auto net = models::make_network(testing::small_unet_config({1, 8, 8}, 4, 0.1));
  net->train();
  DiffusionConfig c;
  c.objective = "scm";
  const ObjectiveContext ctx{3, 100, {1, 8, 8}, torch::kCPU};
  auto objective = make_pretrain_objective(resolve_diffusion(c, ctx), ctx);
  const torch::Tensor x0 = rng::normal({1, rng::Purpose::kNoise}, 0, rng::arange_indices(0, 4), {1, 8, 8});
  const StepData batch{x0, rng::arange_indices(0, 4), {}, 7};
  const auto run = [&](bool fused) {
    EXPECT_TRUE(models::set_fused_group_norm(*net, fused));
    net->zero_grad();
    const models::DropoutKeyScope key({3, 7, batch.index});
    const torch::Tensor loss = objective->loss(*net, batch).loss;
    loss.backward();
    std::vector<torch::Tensor> grads{loss.detach()};
    for (const auto& p : net->parameters()) grads.push_back(p.grad().clone());
    return grads;
  };
  const auto composite = run(false);
  const auto fused = run(true);
  ASSERT_EQ(composite.size(), fused.size());
  EXPECT_NEAR(fused[0].item<double>(), composite[0].item<double>(), 1e-4 * composite[0].item<double>());
  for (size_t i = 1; i < composite.size(); ++i) {
    const double scale = composite[i].abs().max().item<double>();
    EXPECT_TRUE(torch::allclose(fused[i], composite[i], 1e-3, 1e-4 * (1 + scale))) << "parameter " << i;
  }
}

}  // namespace
}  // namespace unidiff::experiments
