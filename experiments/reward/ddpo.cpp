// DDPO (--method=ddpo; Black et al. 2023, handbook Alg 10, FORMULAS.md (48-51)): the DDIM chain
// with eta > 0 as a policy whose steps are Gaussians, trained by PPO-clip on the rewards of its
// own samples. The epochs are experiments/reward/rollouts.h's, with trajectories: each rollout
// records its states and each step's log-probability. Advantages are normalised per class (a
// conditional model's "prompts", DDPO's running per-prompt statistics: --rl_stat_buffer,
// --rl_stat_min) or over the epoch's batch, and clipped to --rl_adv_clip. An optimizer step takes
// the keyed --rl_timestep_fraction of each of its samples' stochastic steps, one backward per step
// with the gradients accumulated and reduced once. Logged: the reward's mean and std, the
// approximate KL and the fraction of clipped ratios.
#include <cmath>

#include "core/error.h"
#include "core/rng.h"
#include "experiments/reward/rollouts.h"
#include "experiments/run/run.h"
#include "models/keyed_dropout.h"

namespace unidiff::experiments {
namespace {

namespace o = objectives;

class Ddpo : public RolloutMethod {
 public:
  explicit Ddpo(RlConfig c) : RolloutMethod("ddpo", std::move(c), /*trajectories=*/true),
                              stats_(c_.stat_buffer, c_.stat_min) {}

  void save_state(dist::CheckpointWriter& w) override {
    RolloutMethod::save_state(w);
    const auto [classes, rewards] = stats_.state();
    w.set_attr("ddpo/stat_epoch", stat_epoch_);
    w.set_attr("ddpo/stat_classes", join_numbers(std::vector<double>(classes.begin(), classes.end())));
    w.set_attr("ddpo/stat_rewards", join_numbers(rewards));
  }

  void load_state(const dist::CheckpointReader& r) override {
    RolloutMethod::load_state(r);
    stat_epoch_ = r.attr_int("ddpo/stat_epoch").value_or(-1);
    const std::vector<double> classes = split_numbers(r.attr_string("ddpo/stat_classes").value_or(""));
    stats_.set_state(std::vector<int64_t>(classes.begin(), classes.end()),
                     split_numbers(r.attr_string("ddpo/stat_rewards").value_or("")));
  }

 protected:
  std::string configure(Run&, const std::string& common) override {
    UD_CHECK_INPUT(c_.eta > 0, "--method=ddpo needs stochastic steps (--rl_eta > 0): a deterministic step has no ",
                   "log-probability");
    stochastic_ = c_.steps - 1;  // the last step, to clean data, is deterministic
    UD_CHECK_INPUT(stochastic_ >= 1, "--method=ddpo needs --rl_steps >= 2 (the last step is deterministic)");
    train_steps_ = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(c_.timestep_fraction * static_cast<double>(stochastic_))));
    return detail::str_cat(common, "; ", train_steps_, " of ", stochastic_, " steps a sample, ratio clip ", c_.clip);
  }

  void rewarded(int64_t epoch, const torch::Tensor& rewards) override {
    if (stat_epoch_ == epoch) {
      advantages_ = stats_.advantages(rewards, labels_);  // resumed within the epoch: already counted
    } else {
      advantages_ = stats_.update(rewards, labels_);
      stat_epoch_ = epoch;
    }
  }

  StepOutput train_step(int64_t step, int64_t epoch, int64_t pass, const torch::Tensor& mine) override {
    const uint32_t seed = run_->seed();
    const torch::Device device = run_->device();
    // Each sample's stochastic steps in a keyed order; the first train_steps_ of them are trained on.
    const torch::Tensor keys = rng::uniform(rng::Stream{seed, rng::Purpose::kTimestep}.in(4, static_cast<uint16_t>(pass)),
                                            static_cast<uint64_t>(epoch), mine, {stochastic_}, device);
    const torch::Tensor picks = keys.argsort(static_cast<int64_t>(1)).slice(1, 0, train_steps_);
    const torch::Tensor adv = advantages_.to(device).index_select(0, mine).clamp(-c_.adv_clip, c_.adv_clip);
    const torch::Tensor labels = labels_.defined() ? labels_.to(device).index_select(0, mine) : torch::Tensor();
    const torch::Tensor rows = torch::arange(mine.size(0), torch::dtype(torch::kInt64).device(device));
    const torch::Tensor st = states_.index_select(0, mine), lp = logp_old_.index_select(0, mine);
    const auto f64 = torch::dtype(torch::kFloat64).device(device);
    torch::Tensor kl = torch::zeros({}, f64), clipped = torch::zeros({}, f64), total = torch::zeros({}, f64);
    policy_->begin_step();
    const models::DropoutKeyScope dropout({seed, static_cast<uint64_t>(step), mine});
    const double share = 1.0 / static_cast<double>(train_steps_);
    for (int64_t k = 0; k < train_steps_; ++k) {
      const torch::Tensor i = picks.select(1, k);  // [b]: each sample's step
      const torch::Tensor x_t = st.index({rows, i}), x_next = st.index({rows, i + 1});
      const torch::Tensor t = times_.index_select(0, i), s = next_times_.index_select(0, i);
      const o::DdimGaussian p =
          o::ddim_gaussian(model_.schedule, x_t, policy_eps(*policy_, model_, x_t, t, labels), t, s, c_.eta);
      const torch::Tensor logp = o::gaussian_log_prob(x_next, p.mean, p.std);
      const torch::Tensor logp_old = lp.index({rows, i});
      const torch::Tensor loss = share * o::ppo_clip_loss(logp, logp_old, adv, c_.clip);
      // The steps of a micro-batch accumulate; the gradient is reduced once, after the last.
      policy_->reducer().set_sync(k + 1 == train_steps_);
      loss.backward();
      total += loss.detach();
      kl += share * o::approx_kl(logp.detach(), logp_old);
      clipped += share * o::clip_fraction(logp.detach(), logp_old, c_.clip);
    }
    StepOutput out;
    out.lr = policy_->end_step(step);
    out.loss = total.to(torch::kFloat32);
    out.stats["approx_kl"] = kl.to(torch::kFloat32);
    out.stats["clip_frac"] = clipped.to(torch::kFloat32);
    return out;
  }

 private:
  o::RewardStats stats_;
  int64_t stat_epoch_ = -1, stochastic_ = 1, train_steps_ = 1;
  torch::Tensor advantages_;  ///< [N] float64 (host), the current epoch's
};

const bool registered = register_method(
    {"ddpo", {}, "reward", "DDPO: PPO-clip on the DDIM chain's Gaussian steps, by the rewards of its own samples",
     [] { return rl_flags("ddpo"); },
     [](const settings::Assignments& a) { return std::make_unique<Ddpo>(rl_settings().build(a)); }});

}  // namespace
}  // namespace unidiff::experiments
