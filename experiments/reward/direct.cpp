// experiments/reward/direct.h, and the methods refl, draft, qsm.
#include "experiments/reward/direct.h"

#include <cmath>

#include <torch/csrc/autograd/autograd.h>

#include "core/error.h"
#include "core/rng.h"
#include "experiments/reward/policy.h"
#include "experiments/run/method.h"
#include "experiments/run/run.h"
#include "models/keyed_dropout.h"
#include "objectives/sampling/ddpm.h"

namespace unidiff::experiments {

namespace o = objectives;

std::vector<int64_t> chain_times(const Teacher& model, int64_t steps) {
  return o::timestep_subsequence(model.schedule.ddpm.num_steps, steps, o::Spacing::kTrailing);
}

namespace {

torch::Tensor eps_at(models::Network& net, const Teacher& model, const torch::Tensor& x, int64_t t,
                     const torch::Tensor& labels) {
  const torch::Tensor tt = torch::full({x.size(0)}, static_cast<double>(t), x.options().dtype(torch::kFloat32));
  const torch::Tensor out = network_output(net, x, tt.to(x.scalar_type()), labels);
  return denoised(model.prediction, out, x, vp_point(model.schedule, tt, x)).eps;
}

}  // namespace

torch::Tensor chain(models::Network& net, const Teacher& model, torch::Tensor x, const std::vector<int64_t>& times,
                    int64_t from, int64_t to, double eta, const o::NoiseFn& noise, const torch::Tensor& labels) {
  const auto n = static_cast<int64_t>(times.size());
  for (int64_t i = from; i < to; ++i) {
    const int64_t t = times[static_cast<size_t>(i)], prev = i + 1 < n ? times[static_cast<size_t>(i + 1)] : -1;
    const torch::Tensor z = eta > 0 && prev >= 0 ? noise(i).to(x.device(), x.scalar_type()) : torch::Tensor();
    x = o::ddim_step(model.schedule.ddpm, x, eps_at(net, model, x, t, labels), t, prev, eta, z);
  }
  return x;
}

torch::Tensor refl_loss(models::Network& net, const Teacher& model, const torch::Tensor& x, int64_t t,
                        const torch::Tensor& labels, const Reward& reward, double lambda, const torch::Tensor& index) {
  const double abar = model.schedule.ddpm.step(t, -1).abar_t;
  const torch::Tensor x0 = (x - std::sqrt(1 - abar) * eps_at(net, model, x, t, labels)) / std::sqrt(abar);
  return -lambda * finite_reward_mean(reward, x0, labels, index);
}

torch::Tensor draft_loss(models::Network& net, const Teacher& model, const torch::Tensor& x_T,
                         const std::vector<int64_t>& times, int64_t k, double eta, const o::NoiseFn& noise,
                         const torch::Tensor& labels, const Reward& reward, double lambda,
                         const torch::Tensor& index) {
  const auto n = static_cast<int64_t>(times.size());
  UD_ASSERT(k >= 1 && k <= n, "DRaFT's K must be in [1, ", n, "]");
  torch::Tensor x;
  {
    torch::NoGradGuard no_grad;
    x = chain(net, model, x_T, times, 0, n - k, eta, noise, labels);
  }
  x = chain(net, model, x, times, n - k, n, eta, noise, labels);
  return -lambda * finite_reward_mean(reward, x, labels, index);
}

torch::Tensor draft_backward_checkpointed(models::Network& net, const Teacher& model, const torch::Tensor& x_T,
                                          const std::vector<int64_t>& times, int64_t k, double eta,
                                          const o::NoiseFn& noise, const torch::Tensor& labels, const Reward& reward,
                                          double lambda, const torch::Tensor& index,
                                          const std::function<void(bool last)>& before_backward) {
  const auto n = static_cast<int64_t>(times.size());
  UD_ASSERT(k >= 1 && k <= n, "DRaFT's K must be in [1, ", n, "]");
  std::vector<torch::Tensor> inputs;  // the input of each of the last K steps
  torch::Tensor x;
  {
    torch::NoGradGuard no_grad;
    x = chain(net, model, x_T, times, 0, n - k, eta, noise, labels);
    for (int64_t i = n - k; i < n; ++i) {
      inputs.push_back(x);
      x = chain(net, model, x, times, i, i + 1, eta, noise, labels);
    }
  }
  // dL/dx0 of L = -lambda mean r(x0) (no parameter of the policy is involved).
  const torch::Tensor x0 = x.detach().requires_grad_(true);
  const torch::Tensor loss = -lambda * finite_reward_mean(reward, x0, labels, index);
  torch::Tensor g = torch::autograd::grad({loss}, {x0})[0];
  for (int64_t j = k - 1; j >= 0; --j) {
    const int64_t i = n - k + j;
    const torch::Tensor in = inputs[static_cast<size_t>(j)].detach().requires_grad_(j > 0);
    const torch::Tensor out = chain(net, model, in, times, i, i + 1, eta, noise, labels);
    before_backward(j == 0);
    out.backward(g);
    if (j > 0) g = in.grad();
  }
  return loss.detach();
}

torch::Tensor qsm_loss(models::Network& net, const Teacher& model, const torch::Tensor& x_t, const torch::Tensor& t,
                       const torch::Tensor& labels, const Reward& reward, double alpha) {
  torch::Tensor g;
  {
    const torch::Tensor x = x_t.detach().requires_grad_(true);
    g = torch::autograd::grad({reward.fn(x, labels).sum()}, {x})[0].detach();
    g = torch::where(g.isfinite(), g, torch::zeros_like(g));
  }
  const VpPoint p = vp_point(model.schedule, t, x_t);
  const torch::Tensor eps = denoised(model.prediction, network_output(net, x_t, t, labels), x_t, p).eps;
  return (eps + p.sigma * alpha * g).pow(2).mean();
}

namespace {

enum class Mode { kRefl, kDraft, kQsm };
const char* mode_name(Mode m) { return m == Mode::kRefl ? "refl" : m == Mode::kDraft ? "draft" : "qsm"; }

class DirectReward : public Method {
 public:
  DirectReward(Mode mode, RlConfig c) : mode_(mode), c_(std::move(c)) {}

  void setup(Run& run) override {
    run_ = &run;
    const std::string m = mode_name(mode_);
    UD_CHECK_INPUT(c_.batch % run.world() == 0, "--rl_batch ", c_.batch, " is not divisible by the ", run.world(),
                   " ranks");
    PolicySetup p = setup_policy(run, c_, m, run.config().steps);
    model_ = std::move(p.model);
    reward_ = std::move(p.reward);
    policy_ = p.policy;
    data_ = p.data;
    UD_CHECK_INPUT(reward_.differentiable, "--method=", m, " follows the reward's gradient; --reward=", reward_.name,
                   " has none (use --method=ddpo or --method=drwr)");
    times_ = chain_times(model_, c_.steps);
    const auto T = static_cast<double>(model_.schedule.ddpm.num_steps);
    if (mode_ == Mode::kRefl) {
      UD_CHECK_INPUT(c_.refl_t_min <= c_.refl_t_max, "--refl_t_min must not exceed --refl_t_max");
      for (size_t i = 0; i < times_.size(); ++i) {
        const double f = static_cast<double>(times_[i]) / T;
        if (f >= c_.refl_t_min && f <= c_.refl_t_max) candidates_.push_back(static_cast<int64_t>(i));
      }
      UD_CHECK_INPUT(!candidates_.empty(), "no step of the ", c_.steps, "-step chain has its time in [",
                     c_.refl_t_min, ", ", c_.refl_t_max, "] of T");
    }
    if (mode_ == Mode::kDraft) {
      UD_CHECK_INPUT(c_.draft_k <= c_.steps, "--draft_k ", c_.draft_k, " exceeds --rl_steps ", c_.steps);
      UD_CHECK_INPUT(!c_.draft_lv || c_.draft_k == 1, "--draft_lv is DRaFT-LV, with --draft_k=1");
    }
    describe_ = detail::str_cat(m, " of '", c_.init_from, "' on the ", reward_.name, " reward: batches of ", c_.batch,
                                ", ", c_.steps, " DDIM steps (eta ", c_.eta, ")",
                                mode_ == Mode::kDraft
                                    ? detail::str_cat(", gradients through the last ", c_.draft_k,
                                                      c_.draft_lv ? " (LV)" : "",
                                                      c_.draft_checkpoint && c_.draft_k > 1
                                                          ? " (activation checkpointing)"
                                                          : "")
                                                      : "");
  }

  int64_t total_steps() const override { return run_->config().steps; }

  std::map<std::string, std::string> guard() const override { return rl_guard(c_, model_.path, mode_name(mode_)); }

  std::string describe() const override { return describe_; }

  StepOutput step(int64_t step) override {
    const uint32_t seed = run_->seed();
    const torch::Device device = run_->device();
    const torch::Tensor index = rank_rows(c_.batch, run_->world(), run_->rank()).to(device);
    const int64_t classes = model_.model.network.num_classes;
    torch::Tensor labels;
    if (classes > 0) {
      labels = rng::randint(rng::Stream{seed, rng::Purpose::kClassLabel}.in(3), static_cast<uint64_t>(step), index,
                            classes, device);
    }
    const std::vector<int64_t>& shape = model_.model.network.data_shape;
    const torch::Tensor x_T = rollout_noise(seed, step, c_.steps, 0, index, shape);
    const o::NoiseFn noise = [&](int64_t i) { return rollout_noise(seed, step, c_.steps, i + 1, index, shape); };
    models::Network& net = policy_->net();
    policy_->begin_step();
    const models::DropoutKeyScope dropout({seed, static_cast<uint64_t>(step), index});
    StepOutput out;
    torch::Tensor loss, reward_mean;
    bool backward_done = false;
    if (mode_ == Mode::kRefl) {
      // A keyed step of the chain in the time range (one for the batch), reached without gradients.
      const int64_t pick = rng::randint(rng::Stream{seed, rng::Purpose::kGeneratorStep}.in(5), static_cast<uint64_t>(step),
                                        torch::zeros({1}, torch::kInt64), static_cast<int64_t>(candidates_.size()))[0]
                               .item<int64_t>();
      const int64_t k = candidates_[static_cast<size_t>(pick)];
      torch::Tensor x;
      {
        torch::NoGradGuard no_grad;
        x = chain(net, model_, x_T, times_, 0, k, c_.eta, noise, labels);
      }
      loss = refl_loss(net, model_, x, times_[static_cast<size_t>(k)], labels, reward_, c_.refl_lambda, index);
      reward_mean = -loss.detach() / c_.refl_lambda;
      if (c_.refl_pretrain_weight > 0) {
        const torch::Tensor pre = pretrain_loss(step);
        out.stats["loss_pretrain"] = pre.detach();
        loss = loss + c_.refl_pretrain_weight * pre;
      }
    } else if (mode_ == Mode::kDraft) {
      if (c_.draft_lv) {
        loss = draft_lv_loss(net, x_T, noise, labels, seed, step, index);
      } else if (c_.draft_checkpoint && c_.draft_k > 1) {
        loss = draft_backward_checkpointed(net, model_, x_T, times_, c_.draft_k, c_.eta, noise, labels, reward_,
                                           c_.refl_lambda, index,
                                           [this](bool last) { policy_->reducer().set_sync(last); });
        backward_done = true;
      } else {
        loss = draft_loss(net, model_, x_T, times_, c_.draft_k, c_.eta, noise, labels, reward_, c_.refl_lambda, index);
      }
      reward_mean = -loss.detach() / c_.refl_lambda;
    } else {
      // On-policy states: the chain's state at a keyed step per sample.
      o::Trajectory tr;
      {
        torch::NoGradGuard no_grad;
        o::DdpmSamplerOptions opts;
        opts.steps = c_.steps;
        opts.spacing = o::Spacing::kTrailing;
        const o::EpsFn eps = [&](const torch::Tensor& x, const torch::Tensor& t) {
          return policy_eps(*policy_, model_, x, t.to(torch::kFloat32), labels);
        };
        const torch::Tensor x0 = o::sample_ddim(eps, model_.schedule.ddpm, x_T, opts, c_.eta, noise, &tr);
        reward_mean = finite_reward_mean(reward_, x0, labels, index);
      }
      const torch::Tensor j = rng::randint(rng::Stream{seed, rng::Purpose::kTimestep}.in(5), static_cast<uint64_t>(step),
                                           index, c_.steps, device);
      const torch::Tensor states = torch::stack(std::vector<torch::Tensor>(tr.x.begin(), tr.x.end() - 1), 1);
      const torch::Tensor rows = torch::arange(index.size(0), torch::dtype(torch::kInt64).device(device));
      const torch::Tensor x_t = states.index({rows, j});
      const torch::Tensor t = torch::tensor(tr.t, torch::kFloat64).to(device, torch::kFloat32).index_select(0, j);
      loss = qsm_loss(net, model_, x_t, t, labels, reward_, c_.qsm_alpha);
    }
    if (!backward_done) loss.backward();
    out.lr = policy_->end_step(step);
    out.loss = loss.detach();
    out.stats["reward_mean"] = reward_mean.to(torch::kFloat32);
    return out;
  }

  ResultModel result() override { return policy_result(model_, c_, policy_); }
  std::vector<ModelGroup*> trained_groups() override { return {policy_}; }

 private:
  /// ReFL's optional pre-training loss: the policy's own diffusion loss on a batch of --data.
  torch::Tensor pretrain_loss(int64_t step) {
    const uint32_t seed = run_->seed();
    const data::Batch b = data_->next();
    const torch::Tensor index = b.index.to(run_->device(), /*non_blocking=*/true);
    const auto s = static_cast<uint64_t>(step);
    const torch::Tensor t = rng::randint({seed, rng::Purpose::kTimestep}, s, index, model_.schedule.ddpm.num_steps,
                                         run_->device()).to(torch::kFloat32);
    const torch::Tensor eps = rng::normal({seed, rng::Purpose::kNoise}, s, index, b.x.sizes().slice(1), run_->device());
    const VpPoint p = vp_point(model_.schedule, t, b.x);
    const torch::Tensor x_t = diffuse(p, b.x, eps);
    const torch::Tensor labels = model_.model.network.num_classes > 0 ? b.labels.to(run_->device()) : torch::Tensor();
    const torch::Tensor target = o::vp_target(model_.prediction, {b.x, eps}, p.alpha, p.sigma);
    return (network_output(policy_->net(), x_t, t, labels) - target).pow(2).mean();
  }

  /// DRaFT-LV: the chain without gradients to the last step's input x; its clean estimate re-noised
  /// to the last step's time twice (keyed) and denoised with gradients; the rewards averaged.
  torch::Tensor draft_lv_loss(models::Network& net, const torch::Tensor& x_T, const o::NoiseFn& noise,
                              const torch::Tensor& labels, uint32_t seed, int64_t step, const torch::Tensor& index) {
    const auto n = static_cast<int64_t>(times_.size());
    const int64_t t = times_.back();
    torch::Tensor x0;
    {
      torch::NoGradGuard no_grad;
      x0 = chain(net, model_, chain(net, model_, x_T, times_, 0, n - 1, c_.eta, noise, labels), times_, n - 1, n,
                 c_.eta, noise, labels);
    }
    const o::Schedule& sch = model_.schedule;
    torch::Tensor loss = torch::zeros({}, x0.options());
    for (int64_t r = 0; r < 2; ++r) {
      const torch::Tensor z = rng::normal(rng::Stream{seed, rng::Purpose::kNoise}.in(5, static_cast<uint16_t>(r)),
                                          static_cast<uint64_t>(step), index, x0.sizes().slice(1), x0.device());
      const torch::Tensor x = sch.alpha(static_cast<double>(t)) * x0 + sch.sigma(static_cast<double>(t)) * z;
      loss = loss + 0.5 * refl_loss(net, model_, x, t, labels, reward_, c_.refl_lambda, index);
    }
    return loss;
  }

  Mode mode_;
  RlConfig c_;
  Run* run_ = nullptr;
  DataStream* data_ = nullptr;
  Teacher model_;
  Reward reward_;
  ModelGroup* policy_ = nullptr;
  std::vector<int64_t> times_, candidates_;
  std::string describe_;
};

MethodInfo info(Mode mode, const char* summary) {
  return {mode_name(mode), {}, "reward", summary, [mode] { return rl_flags(mode_name(mode)); },
          [mode](const settings::Assignments& a) { return std::make_unique<DirectReward>(mode, rl_settings().build(a)); }};
}

const bool registered =
    register_method(info(Mode::kRefl, "ReFL: the reward's gradient through one denoising call at a random late step")) &&
    register_method(info(Mode::kDraft, "DRaFT-K: the reward's gradient through the last K steps of the sampling chain")) &&
    register_method(info(Mode::kQsm, "Q-score matching: the score matched to alpha times the reward's gradient"));

}  // namespace
}  // namespace unidiff::experiments
