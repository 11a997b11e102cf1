// DRWR (--method=drwr; handbook 3.3.2): reward-weighted regression on the policy's own samples.
// The epochs are experiments/reward/rollouts.h's (no trajectories: the clean samples and their
// rewards); each optimizer step is the policy's own diffusion loss (its parameterisation, keyed
// times and noise) on a micro-batch of the epoch's samples, each weighted by
// min(exp(r / --drwr_beta), --drwr_max_weight), or with --drwr_advantage by
// min(exp((r - mean r) / beta), max) (the baseline-subtracted advantage, DAWR's first step); the
// weights are divided by their mean over the epoch. A non-finite reward weighs 0.
#include <cmath>

#include "core/error.h"
#include "core/rng.h"
#include "experiments/reward/rollouts.h"
#include "experiments/run/run.h"
#include "models/keyed_dropout.h"

namespace unidiff::experiments {
namespace {

namespace o = objectives;

class Drwr : public RolloutMethod {
 public:
  explicit Drwr(RlConfig c) : RolloutMethod("drwr", std::move(c), /*trajectories=*/false) {}

 protected:
  std::string configure(Run&, const std::string& common) override {
    return detail::str_cat(common, "; weights exp(", c_.drwr_advantage ? "(r - mean r)" : "r", " / ", c_.drwr_beta,
                           ") clipped at ", c_.drwr_max_weight);
  }

  void rewarded(int64_t, const torch::Tensor& rewards) override {
    const torch::Tensor finite = rewards.isfinite();
    const double baseline = c_.drwr_advantage ? reward_mean_ : 0.0;
    torch::Tensor w = o::rwr_weights(torch::where(finite, rewards - baseline, torch::zeros_like(rewards)),
                                     c_.drwr_beta, c_.drwr_max_weight);
    w = torch::where(finite, w, torch::zeros_like(w));
    const double mean = w.sum().item<double>() / std::max<double>(1.0, finite.sum().item<double>());
    weights_ = mean > 0 ? w / mean : w;
  }

  StepOutput train_step(int64_t step, int64_t, int64_t, const torch::Tensor& mine) override {
    const uint32_t seed = run_->seed();
    const torch::Device device = run_->device();
    const torch::Tensor x0 = samples_.index_select(0, mine);
    const torch::Tensor labels = labels_.defined() ? labels_.to(device).index_select(0, mine) : torch::Tensor();
    const torch::Tensor w = weights_.to(device, torch::kFloat32).index_select(0, mine);
    const auto s = static_cast<uint64_t>(step);
    const torch::Tensor t =
        rng::randint({seed, rng::Purpose::kTimestep}, s, mine, model_.schedule.ddpm.num_steps, device).to(torch::kFloat32);
    const torch::Tensor eps = rng::normal({seed, rng::Purpose::kNoise}, s, mine, x0.sizes().slice(1), device);
    policy_->begin_step();
    const models::DropoutKeyScope dropout({seed, s, mine});
    const VpPoint p = vp_point(model_.schedule, t, x0);
    const torch::Tensor x_t = diffuse(p, x0, eps);
    const torch::Tensor target = o::vp_target(model_.prediction, {x0, eps}, p.alpha, p.sigma);
    const torch::Tensor err = (network_output(policy_->net(), x_t, t, labels) - target).pow(2);
    const torch::Tensor loss = (w * err.reshape({err.size(0), -1}).mean(1)).mean();
    loss.backward();
    StepOutput out;
    out.lr = policy_->end_step(step);
    out.loss = loss.detach();
    out.stats["weight_max"] = w.max().detach();
    return out;
  }

 private:
  torch::Tensor weights_;  ///< [N] the epoch's weights, mean 1 over its finite rewards
};

const bool registered = register_method(
    {"drwr", {}, "reward", "DRWR: the policy's diffusion loss on its own samples, weighted by exp(reward / beta)",
     [] { return rl_flags("drwr"); },
     [](const settings::Assignments& a) { return std::make_unique<Drwr>(rl_settings().build(a)); }});

}  // namespace
}  // namespace unidiff::experiments
