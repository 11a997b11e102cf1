// experiments/reward/rollouts.h.
#include "experiments/reward/rollouts.h"

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "core/error.h"
#include "core/h5.h"
#include "core/image.h"
#include "core/log.h"
#include "core/rng.h"
#include "experiments/run/run.h"

namespace unidiff::experiments {

namespace o = objectives;
namespace sfs = std::filesystem;

std::string join_numbers(const std::vector<double>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) s.push_back(',');
    s.append(settings::format_double(v[i]));
  }
  return s;
}

std::vector<double> split_numbers(const std::string& s) {
  std::vector<double> out;
  size_t a = 0;
  while (a < s.size()) {
    const size_t b = s.find(',', a);
    out.push_back(std::stod(s.substr(a, b == std::string::npos ? std::string::npos : b - a)));
    if (b == std::string::npos) break;
    a = b + 1;
  }
  return out;
}

RolloutMethod::RolloutMethod(std::string name, RlConfig c, bool trajectories)
    : c_(std::move(c)), name_(std::move(name)), trajectories_(trajectories) {}

void RolloutMethod::setup(Run& run) {
  run_ = &run;
  UD_CHECK_INPUT(c_.samples % c_.batch == 0, "--rl_samples ", c_.samples, " must be a multiple of --rl_batch ",
                 c_.batch);
  UD_CHECK_INPUT(c_.batch % run.world() == 0 && c_.samples % run.world() == 0, "--rl_batch ", c_.batch,
                 " and --rl_samples ", c_.samples, " must be divisible by the ", run.world(), " ranks");
  PolicySetup p = setup_policy(run, c_, name_, total_steps());
  model_ = std::move(p.model);
  reward_ = std::move(p.reward);
  policy_ = p.policy;
  old_ = &run.groups().add(std::make_unique<ModelGroup>("old_policy", ModelGroup::Role::kFrozen, model_.model.module,
                                                        run.comm()));
  per_epoch_ = c_.inner_epochs * (c_.samples / c_.batch);
  describe_ = configure(run, detail::str_cat(name_, " of '", c_.init_from, "' on the ", reward_.name, " reward: ",
                                             c_.epochs, " epochs of ", c_.samples, " samples (", c_.steps,
                                             " DDIM steps, eta ", c_.eta, "), ", c_.inner_epochs,
                                             " pass(es) in micro-batches of ", c_.batch));
}

std::map<std::string, std::string> RolloutMethod::guard() const { return rl_guard(c_, model_.path, name_); }

void RolloutMethod::save_state(dist::CheckpointWriter& w) { w.set_attr("rl/reward_history", join_numbers(history_)); }

void RolloutMethod::load_state(const dist::CheckpointReader& r) {
  history_ = split_numbers(r.attr_string("rl/reward_history").value_or(""));
}

StepOutput RolloutMethod::step(int64_t step) {
  const int64_t epoch = step / per_epoch_, j = step % per_epoch_;
  if (epoch != rollout_epoch_) make_rollouts(epoch, /*fresh=*/j == 0);
  const int64_t per_pass = c_.samples / c_.batch;
  const int64_t pass = j / per_pass, m = j % per_pass;
  // The micro-batch: a keyed shuffle of the epoch's samples; this rank's rows of it.
  const torch::Tensor order = rng::permutation(rng::Stream{run_->seed(), rng::Purpose::kDataOrder}.in(4, pass),
                                               static_cast<uint64_t>(epoch), c_.samples);
  const torch::Tensor batch = order.slice(0, m * c_.batch, (m + 1) * c_.batch);
  const torch::Tensor mine = batch.index_select(0, rank_rows(c_.batch, run_->world(), run_->rank())).to(run_->device());
  StepOutput out = train_step(step, epoch, pass, mine);
  const auto opts = torch::dtype(torch::kFloat32).device(run_->device());
  out.stats["reward_mean"] = torch::full({}, reward_mean_, opts);
  out.stats["reward_std"] = torch::full({}, reward_std_, opts);
  out.boundary = j + 1 == per_epoch_;
  return out;
}

std::string RolloutMethod::progress(int64_t step) const {
  return detail::str_cat("epoch ", step / per_epoch_ + 1, "/", c_.epochs);
}

ResultModel RolloutMethod::result() { return policy_result(model_, c_, policy_); }

void RolloutMethod::make_rollouts(int64_t epoch, bool fresh) {
  const uint32_t seed = run_->seed();
  const torch::Device device = run_->device();
  dist::Communicator& comm = run_->comm();
  if (fresh) {
    torch::NoGradGuard no_grad;
    const auto a = policy_->module().parameters(), b = old_->module().parameters();
    for (size_t i = 0; i < a.size(); ++i) b[i].copy_(a[i]);
  }
  const torch::Tensor index = rank_rows(c_.samples, run_->world(), run_->rank()).to(device);
  const int64_t classes = model_.model.network.num_classes;
  torch::Tensor labels;
  if (classes > 0) {
    labels = rng::randint(rng::Stream{seed, rng::Purpose::kClassLabel}.in(3), static_cast<uint64_t>(epoch), index,
                          classes, device);
  }
  o::Trajectory tr;
  const torch::Tensor x0 =
      rollout(*old_, model_, index, labels, seed, epoch, c_.steps, c_.eta, trajectories_ ? &tr : nullptr);
  samples_ = gather_rows(comm, x0, index, c_.samples);
  if (trajectories_) {
    std::vector<torch::Tensor> lps;
    for (const auto& l : tr.log_prob) {
      lps.push_back(l.defined() ? l : torch::zeros({index.size(0)}, torch::dtype(torch::kFloat64).device(device)));
    }
    states_ = gather_rows(comm, torch::stack(tr.x, 1), index, c_.samples);
    logp_old_ = gather_rows(comm, torch::stack(lps, 1), index, c_.samples);
    times_ = torch::tensor(tr.t, torch::kFloat64).to(device, torch::kFloat32);
    next_times_ = torch::tensor(tr.t_next, torch::kFloat64).to(device, torch::kFloat32);
  }
  rewards_ = gathered_rewards(comm, reward_, x0, labels, index, c_.samples);
  labels_ = labels.defined() ? gather_rows(comm, labels, index, c_.samples).cpu() : torch::Tensor();
  const torch::Tensor finite = rewards_.index_select(0, rewards_.isfinite().nonzero().view({-1}));
  reward_mean_ = finite.numel() > 0 ? finite.mean().item<double>() : 0.0;
  reward_std_ = finite.numel() > 1 ? finite.std().item<double>() : 0.0;
  rewarded(epoch, rewards_);
  if (static_cast<int64_t>(history_.size()) == epoch) history_.push_back(reward_mean_);
  if (run_->rank() == 0) {
    log::info(name_, detail::str_cat("epoch ", epoch + 1, ": ", c_.samples, " samples, reward mean ", reward_mean_,
                                     ", std ", reward_std_));
    image::write_png(sfs::path(run_->config().run_dir) / "reward.png", image::line_plot(history_));
  }
  if (c_.save_rollouts) save_rollouts(epoch, x0, labels, index);
  rollout_epoch_ = epoch;
}

void RolloutMethod::save_rollouts(int64_t epoch, const torch::Tensor& x0, const torch::Tensor& labels,
                                  const torch::Tensor& index) {
  const sfs::path dir = sfs::path(run_->config().run_dir) / "rollouts";
  sfs::create_directories(dir);
  char name[64];
  std::snprintf(name, sizeof(name), "epoch-%06ld-rank-%04d.h5", static_cast<long>(epoch + 1), run_->rank());
  const torch::Tensor idx = index.to(torch::kCPU, torch::kInt64);
  h5::write_atomically(dir / name, [&](h5::File& f) {
    h5::write_tensor(f, "/data", x0.to(torch::kCPU, torch::kFloat32));
    h5::write_tensor(f, "/rewards", rewards_.index_select(0, idx));
    h5::write_tensor(f, "/index", idx);
    if (labels.defined()) {
      h5::write_tensor(f, "/labels", labels.to(torch::kCPU, torch::kInt64));
      h5::write_attr(f, "/labels", "num_classes", model_.model.network.num_classes);
    }
  });
}

}  // namespace unidiff::experiments
