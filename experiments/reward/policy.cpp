// experiments/reward/policy.h.
#include "experiments/reward/policy.h"

#include <set>

#include "core/error.h"
#include "core/log.h"
#include "core/rng.h"
#include "experiments/run/run.h"
#include "objectives/reward/policy.h"
#include "objectives/sampling/ddpm.h"

namespace unidiff::experiments {

namespace o = objectives;

const settings::Table<RlConfig>& rl_settings() {
  static const settings::Table<RlConfig> t = [] {
    using settings::Decl;
    using C = RlConfig;
    namespace s = settings;
    s::Table<C> t;
    t.add(Decl("init_from", "reward fine-tuning: the policy's starting weights (a DDPM model file or run directory; "
                            "EMA weights)")
              .guarded(),
          &C::init_from);
    t.include(reward_settings(), "", &C::reward);
    t.add(Decl("rl_samples", "ddpo, drwr: policy samples per epoch, over all ranks").guarded().check(s::positive()),
          &C::samples);
    t.add(Decl("rl_batch", "reward fine-tuning: samples per optimizer step, over all ranks").guarded().check(
              s::positive()),
          &C::batch);
    t.add(Decl("rl_steps", "reward fine-tuning: DDIM steps of the policy's samples (trailing)").guarded().check(
              s::positive()),
          &C::steps);
    t.add(Decl("rl_eta", "reward fine-tuning: DDIM stochasticity of the policy's samples (ddpo needs > 0)")
              .guarded()
              .check(s::non_negative()),
          &C::eta);
    t.add(Decl("rl_epochs", "ddpo, drwr: sampling epochs").guarded().check(s::positive()), &C::epochs);
    t.add(Decl("rl_inner_epochs", "ddpo, drwr: passes over each epoch's samples").guarded().check(s::positive()),
          &C::inner_epochs);
    t.add(Decl("rl_clip", "ddpo: PPO's ratio clip (ddpo-pytorch: 1e-4)").guarded().check(s::positive()), &C::clip);
    t.add(Decl("rl_adv_clip", "ddpo: advantages clipped to [-c, c]").guarded().check(s::positive()), &C::adv_clip);
    t.add(Decl("rl_timestep_fraction", "ddpo: fraction of each sample's stochastic steps trained on (keyed)")
              .guarded()
              .check(s::positive())
              .check(s::at_most(1)),
          &C::timestep_fraction);
    t.add(Decl("rl_stat_buffer", "ddpo: rewards kept per class for its statistics").guarded().check(s::positive()),
          &C::stat_buffer);
    t.add(Decl("rl_stat_min", "ddpo: rewards a class needs before its own statistics replace the batch's")
              .guarded()
              .check(s::non_negative()),
          &C::stat_min);
    t.add(Decl("rl_save_rollouts", "ddpo, drwr: write each epoch's samples, rewards and labels to "
                                   "RUN_DIR/rollouts/epoch-E-rank-R.h5 (read together as one dataset)"),
          &C::save_rollouts);
    t.add(Decl("drwr_beta", "drwr: temperature beta of the weight exp(r / beta)").guarded().check(s::positive()),
          &C::drwr_beta);
    t.add(Decl("drwr_max_weight", "drwr: the weight's clip").guarded().check(s::positive()), &C::drwr_max_weight);
    t.add(Decl("drwr_advantage", "drwr: weight by exp((r - mean r) / beta), the baseline-subtracted advantage").guarded(),
          &C::drwr_advantage);
    t.add(Decl("refl_t_min", "refl: the random step's smallest time, a fraction of T").guarded().check(
              s::unit_interval()),
          &C::refl_t_min);
    t.add(Decl("refl_t_max", "refl: its largest time").guarded().check(s::at_most(1)), &C::refl_t_max);
    t.add(Decl("refl_lambda", "refl, draft: weight lambda of the loss -lambda r").guarded().check(s::positive()),
          &C::refl_lambda);
    t.add(Decl("refl_pretrain_weight", "refl: weight of the pre-training loss on --data (0: none)")
              .guarded()
              .check(s::non_negative()),
          &C::refl_pretrain_weight);
    t.add(Decl("draft_k", "draft: the last K sampler steps carry gradients").guarded().check(s::positive()),
          &C::draft_k);
    t.add(Decl("draft_lv", "draft: DRaFT-LV (K = 1): the last step's input re-noised twice, both denoised, rewards "
                           "averaged")
              .guarded(),
          &C::draft_lv);
    t.add(Decl("draft_checkpoint", "draft with --draft_k > 1: hold one step's activations at a time and recompute "
                                   "each step in the backward pass (the same gradients; off: keep all K steps')"),
          &C::draft_checkpoint);
    t.add(Decl("qsm_alpha", "qsm: the score is matched to alpha grad r(x_t)").guarded().check(s::positive()),
          &C::qsm_alpha);
    return t;
  }();
  return t;
}

std::vector<settings::FlagInfo> rl_flags(const std::string& method) {
  static const std::set<std::string> epochs{"rl_samples", "rl_epochs", "rl_inner_epochs", "rl_save_rollouts"};
  std::vector<settings::FlagInfo> out;
  for (auto& f : settings::flag_infos(rl_settings(), "")) {
    const std::string& n = f.name;
    const auto own = [&](const char* prefix) { return n.rfind(prefix, 0) == 0; };
    bool keep = n == "init_from" || own("reward") || n == "rl_batch" || n == "rl_steps" || n == "rl_eta";
    if (method == "ddpo") keep = keep || own("rl_");
    if (method == "drwr") keep = keep || epochs.count(n) || own("drwr_");
    if (method == "refl") keep = keep || own("refl_");
    if (method == "draft") keep = keep || own("draft_") || n == "refl_lambda";
    if (method == "qsm") keep = keep || own("qsm_");
    if (keep) out.push_back(std::move(f));
  }
  return out;
}

PolicySetup setup_policy(Run& run, const RlConfig& c, const std::string& method, int64_t total_steps) {
  const RunConfig& rc = run.config();
  UD_CHECK_INPUT(rc.precision == "fp32" && !rc.cuda_graph && !rc.channels_last && !rc.fused_group_norm,
                 "--precision=bf16, --channels_last, --cuda_graph and --fused_group_norm apply to --method=pretrain; ",
                 "--method=", method, " runs in float32");
  PolicySetup out;
  out.data = &run.open_stream("data", rc.data.path, rc.data.global_batch);
  out.model = load_teacher(c.init_from, out.data->dataset().sample_shape(), run.device(), method);
  out.reward = make_reward(c.reward, out.model.model.network.data_shape, run.device());
  UD_CHECK_INPUT(!out.reward.needs_labels || out.model.model.network.num_classes > 0, "--reward_class=-1 rewards ",
                 "each sample's own class; the policy '", c.init_from, "' is not class-conditional");
  auto policy = models::make_network(out.model.model.network);
  policy->to(run.device());
  {
    torch::NoGradGuard no_grad;
    const auto a = out.model.model.module->parameters(), b = policy->parameters();
    for (size_t i = 0; i < a.size(); ++i) b[i].copy_(a[i]);
  }
  out.policy = &run.groups().add(std::make_unique<ModelGroup>("policy", ModelGroup::Role::kTrained, policy, run.comm(),
                                                              rc.optim, rc.dist, total_steps));
  return out;
}

std::map<std::string, std::string> rl_guard(const RlConfig& c, const std::string& model_path,
                                            const std::string& method) {
  RlConfig resolved = c;
  resolved.init_from = model_path;
  std::set<std::string> mine;
  for (const auto& f : rl_flags(method)) mine.insert(f.name);
  std::map<std::string, std::string> g;
  for (const auto& [k, v] : rl_settings().guarded(resolved)) {
    if (mine.count(k)) g[k] = v;
  }
  return g;
}

ResultModel policy_result(const Teacher& model, const RlConfig& c, ModelGroup* policy) {
  DiffusionConfig d = model.model.diffusion;
  d.sampler = "ddim";
  d.sampler_steps = c.steps;
  d.sampler_spacing = "trailing";
  d.sampler_eta = c.eta;
  return {model.model.network, d, policy};
}

torch::Tensor rank_rows(int64_t n, int world, int rank) { return torch::arange(rank, n, world, torch::kInt64); }

torch::Tensor gather_rows(dist::Communicator& comm, const torch::Tensor& local, const torch::Tensor& index, int64_t n) {
  const torch::Tensor all = comm.all_gather(local.contiguous());
  const torch::Tensor where = comm.all_gather(index.to(local.device(), torch::kInt64).contiguous());
  std::vector<int64_t> shape = all.sizes().vec();
  shape[0] = n;
  torch::Tensor out = torch::empty(shape, all.options());
  out.index_copy_(0, where, all);
  return out;
}

torch::Tensor policy_eps(ModelGroup& group, const Teacher& model, const torch::Tensor& x, const torch::Tensor& t,
                         const torch::Tensor& labels) {
  const torch::Tensor out = network_output(group.net(), x, t, labels);
  return denoised(model.prediction, out, x, vp_point(model.schedule, t, x)).eps;
}

torch::Tensor rollout_noise(uint32_t seed, int64_t r, int64_t steps, int64_t i, const torch::Tensor& index,
                            const std::vector<int64_t>& shape) {
  const rng::Stream s = rng::Stream{seed, rng::Purpose::kSampling}.in(3);
  return rng::normal(s, static_cast<uint64_t>(r * (steps + 1) + i), index, shape, index.device());
}

torch::Tensor rollout(ModelGroup& group, const Teacher& model, const torch::Tensor& index, const torch::Tensor& labels,
                      uint32_t seed, int64_t r, int64_t steps, double eta, o::Trajectory* trajectory) {
  torch::NoGradGuard no_grad;
  const std::vector<int64_t>& shape = model.model.network.data_shape;
  const std::vector<int64_t> times =
      o::timestep_subsequence(model.schedule.ddpm.num_steps, steps, o::Spacing::kTrailing);
  const auto n = static_cast<int64_t>(times.size());
  const int64_t b = index.size(0);
  const auto f32 = torch::dtype(torch::kFloat32).device(index.device());
  torch::Tensor x = rollout_noise(seed, r, steps, 0, index, shape);
  if (trajectory) trajectory->clear();
  // The steps as the methods recompute them (ddim_gaussian, gaussian_log_prob, float32 times):
  // DDPO's first ratio is then 1 up to the network's own rounding.
  for (int64_t i = 0; i < n; ++i) {
    const int64_t t = times[static_cast<size_t>(i)], s = i + 1 < n ? times[static_cast<size_t>(i + 1)] : -1;
    const torch::Tensor tt = torch::full({b}, static_cast<double>(t), f32);
    const torch::Tensor ss = torch::full({b}, static_cast<double>(s), f32);
    const o::DdimGaussian p = o::ddim_gaussian(model.schedule, x, policy_eps(group, model, x, tt, labels), tt, ss, eta);
    const double sd = p.std.numel() > 0 ? p.std[0].item<double>() : 0.0;
    torch::Tensor next = p.mean, logp;
    if (sd > 0) {
      next = p.mean + sd * rollout_noise(seed, r, steps, i + 1, index, shape);
      logp = o::gaussian_log_prob(next, p.mean, p.std);
    }
    if (trajectory) {
      trajectory->x.push_back(x);
      trajectory->t.push_back(static_cast<double>(t));
      trajectory->t_next.push_back(static_cast<double>(s));
      trajectory->mean.push_back(p.mean);
      trajectory->std.push_back(sd);
      trajectory->log_prob.push_back(logp);
    }
    x = next;
  }
  if (trajectory) trajectory->x.push_back(x);
  return x;
}

torch::Tensor gathered_rewards(dist::Communicator& comm, const Reward& reward, const torch::Tensor& x,
                              const torch::Tensor& labels, const torch::Tensor& index, int64_t n) {
  torch::Tensor r;
  {
    torch::NoGradGuard no_grad;
    r = reward.fn(x, labels).to(torch::kFloat64);
  }
  const torch::Tensor all = gather_rows(comm, r, index, n).cpu();
  const torch::Tensor bad = all.isfinite().logical_not().nonzero().view({-1});
  if (bad.numel() > 0 && comm.rank() == 0) {
    std::string list;
    for (int64_t i = 0; i < std::min<int64_t>(bad.numel(), 16); ++i) {
      list += (i ? ", " : "") + std::to_string(bad[i].item<int64_t>());
    }
    log::warn("reward", detail::str_cat(bad.numel(), " non-finite reward(s), skipped (advantage 0, left out of the ",
                                        "statistics): samples ", list, bad.numel() > 16 ? ", ..." : ""));
  }
  return all;
}

}  // namespace unidiff::experiments
