// experiments/pretrain/pretrain.h, and the method's registration.
#include "experiments/pretrain/pretrain.h"

#include <filesystem>
#include <optional>

#include "core/error.h"
#include "core/h5.h"
#include "core/log.h"
#include "core/rng.h"
#include "experiments/model_io.h"
#include "experiments/pretrain/graph_step.h"
#include "experiments/run/method.h"
#include "experiments/run/run.h"
#include "experiments/sample.h"
#include "models/group_norm_act.h"
#include "models/keyed_dropout.h"
#include "models/precision.h"
#include "models/unet.h"

namespace unidiff::experiments {

const settings::Table<PretrainConfig>& pretrain_settings() {
  static const settings::Table<PretrainConfig> t = [] {
    settings::Table<PretrainConfig> t;
    t.include(models::network_settings(), "", &PretrainConfig::network);
    t.include(diffusion_settings(), "", &PretrainConfig::diffusion);
    t.add(settings::Decl("init_from", "start from these weights (a model file or run directory; EMA weights); the "
                                      "architecture must match"),
          &PretrainConfig::init_from);
    return t;
  }();
  return t;
}

StepOutcome pretrain_step(ModelGroup& group, PretrainObjective& objective, const StepData& data, uint32_t seed,
                          const std::string& precision, bool channels_last) {
  objective.prepare(data.step);
  const double lr = group.schedule(data.step);
  return {pretrain_step_kernels(group, objective, data, seed, precision, channels_last), lr};
}

torch::Tensor pretrain_step_kernels(ModelGroup& group, PretrainObjective& objective, const StepData& data,
                                    uint32_t seed, const std::string& precision, bool channels_last) {
  group.begin_step();
  objectives::LossOutput out;
  {
    // Dropout masks keyed by (seed, step, layer, sample index), like every other draw.
    const models::DropoutKeyScope dropout_key(
        {seed, static_cast<uint64_t>(data.step), data.index, data.step_counter});
    const models::AutocastScope autocast(data.x0.device().type(), precision);
    StepData in = data;
    in.x0 = models::to_layout(data.x0, channels_last);
    out = objective.loss(group.net(), in);
  }
  out.loss.backward();
  group.update();
  return out.loss.detach();
}

void init_weights(const std::string& from, const models::NetworkConfig& net_cfg, models::Network& model) {
  const LoadedModel init = load_model(from, /*use_ema=*/true);
  UD_CHECK_INPUT(init.network.arch == net_cfg.arch && init.network.data_shape == net_cfg.data_shape &&
                     init.network.num_classes == net_cfg.num_classes,
                 "--init_from '", from, "' is a ", init.network.arch, " on samples of shape ",
                 torch::IntArrayRef(init.network.data_shape), "; this run builds a ", net_cfg.arch,
                 " on ", torch::IntArrayRef(net_cfg.data_shape));
  // Settings that change the function but no parameter's shape (an imported diffusers unet may
  // differ from the flag defaults in all of them).
  const auto& a = init.network;
  const auto& b = net_cfg;
  UD_CHECK_INPUT(a.norm_eps == b.norm_eps && a.downsample_padding == b.downsample_padding &&
                     a.attn_head_dim == b.attn_head_dim && a.time_flip == b.time_flip && a.time_shift == b.time_shift,
                 "--init_from '", from, "' was built with --model_norm_eps=", a.norm_eps, " --model_downsample_padding=",
                 a.downsample_padding, " --model_attn_head_dim=", a.attn_head_dim, " --model_time_flip=", a.time_flip,
                 " --model_time_shift=", a.time_shift, "; this run has ", b.norm_eps, ", ", b.downsample_padding, ", ",
                 b.attn_head_dim, ", ", b.time_flip, " and ", b.time_shift, " (pass those flags)");
  torch::NoGradGuard no_grad;
  const auto src = init.module->named_parameters();
  for (auto& p : model.named_parameters()) {
    const torch::Tensor* s = src.find(p.key());
    UD_CHECK_INPUT(s != nullptr && s->sizes() == p.value().sizes(), "--init_from '", from,
                   "': parameter ", p.key(), " is missing or shaped differently (other model settings?)");
    p.value().copy_(*s);
  }
}

namespace {

/// Reflow pairs are a samples file of `unidiff sample` drawn deterministically (its noise key
/// regenerates the noise end of every pair): of a rectified flow (reflow proper), or of a DDPM
/// teacher (the handbook's rectified-flow distillation of a diffusion model, InstaFlow's pairs;
/// both start from N(0, I)).
PairsSource reflow_pairs(const std::string& data_path) {
  PairsSource p = deterministic_pairs(data_path, "--reflow");
  UD_CHECK_INPUT(p.objective == "rf" || p.objective == "ddpm", "'", data_path, "' holds samples of a ", p.objective,
                 " model; reflow pairs come from a rectified flow (objective rf) or a DDPM teacher");
  return p;
}

class Pretrain : public Method {
 public:
  explicit Pretrain(PretrainConfig c) : c_(std::move(c)) {}

  void setup(Run& run) override {
    run_ = &run;
    const RunConfig& rc = run.config();
    const torch::Device device = run.device();
    if (rc.cuda_graph) GraphedPretrainStep::check_supported(device, run.comm());
    if (rc.fused_group_norm) models::check_fused_group_norm(device);
    data_ = &run.open_stream("data", rc.data.path, rc.data.global_batch);
    const data::TensorDataset& dataset = data_->dataset();
    net_ = c_.network;
    net_.data_shape = dataset.sample_shape();
    if (c_.diffusion.class_conditional) {
      UD_CHECK_INPUT(dataset.num_classes() > 0, "--class_conditional needs a dataset with /labels");
      net_.num_classes = dataset.num_classes();
    }
    const ObjectiveContext context{rc.seed, rc.steps, net_.data_shape, device};
    diffusion_ = resolve_diffusion(c_.diffusion, context);
    if (diffusion_.reflow) {
      const PairsSource pairs = reflow_pairs(rc.data.path);
      diffusion_.reflow_seed = pairs.seed;
      diffusion_.reflow_pairs = pairs.describe();
    }
    if (diffusion_.objective == "ddpm" && diffusion_.prediction == "instaflow") {
      // InstaFlow samples with its own sampler (Algorithms 6-8) from the last step down (trailing:
      // leading spacing never visits T - 1), one step after one-step distillation (--rf_time=one).
      diffusion_.sampler = "instaflow";
      diffusion_.sampler_spacing = "trailing";
      if (diffusion_.rf_time == "one") diffusion_.sampler_steps = 1;
    }
    torch::manual_seed(rc.seed);  // same initial weights on every rank (then broadcast anyway)
    auto model = models::make_network(net_);
    if (!c_.init_from.empty()) init_weights(c_.init_from, net_, *model);
    if (rc.fused_group_norm && !models::set_fused_group_norm(*model, true)) {
      log::warn("train", "--fused_group_norm has no effect on a " + net_.arch + " (it has no group norms)");
    }
    objective_ = make_pretrain_objective(diffusion_, context);
    int64_t params = 0;
    for (const auto& p : model->parameters()) params += p.numel();
    describe_ = detail::str_cat(objective_->describe(), " on ", dataset.size(), " samples of shape ",
                                torch::IntArrayRef(net_.data_shape), "; ", net_.arch, " with ", params, " parameters");
    // Rank 0's initial weights are the truth for every rank (the group broadcasts them).
    model->to(device);
    // Before the group: its reducer keeps each parameter's layout in the flat buckets.
    channels_last_ = rc.channels_last && net_.data_shape.size() == 3;
    models::set_channels_last(*model, channels_last_);
    group_ = &run.groups().add(std::make_unique<ModelGroup>("model", ModelGroup::Role::kTrained, model, run.comm(),
                                                            rc.optim, rc.dist, rc.steps));
    if (rc.cuda_graph) {
      graphed_.emplace(*group_, *objective_, rc.seed, rc.precision, channels_last_);
    }
  }

  int64_t total_steps() const override { return run_->config().steps; }

  std::map<std::string, std::string> guard() const override {
    // The network (with its data shape and classes), and what the objective's mathematics reads.
    std::map<std::string, std::string> g = models::network_settings().guarded(net_);
    for (const char* key : {"objective", "class_conditional", "cfg_drop"}) {
      g[key] = diffusion_settings().find_key(key)->format(diffusion_);
    }
    for (const std::string& key : objective_->setting_names()) {
      g[key] = diffusion_settings().find_key(key)->format(diffusion_);
    }
    return g;
  }

  std::string describe() const override { return describe_; }

  StepOutput step(int64_t step) override {
    const RunConfig& rc = run_->config();
    const torch::Device device = run_->device();
    const data::Batch batch = data_->next();
    const auto s = static_cast<uint64_t>(step);
    // The sample indices key every draw of the step: on the device once (pinned: no host wait).
    const torch::Tensor index = batch.index.to(device, /*non_blocking=*/true);
    // Class labels, each replaced by "no class" (K) with probability cfg_drop (keyed per sample):
    // the one network learns the conditional and the unconditional model for guidance.
    torch::Tensor labels;
    if (net_.num_classes > 0) {
      const torch::Tensor drop =
          rng::uniform({rc.seed, rng::Purpose::kLabelDrop}, s, index, {1}, device).view({-1}) < diffusion_.cfg_drop;
      const torch::Tensor given = batch.labels.to(device, /*non_blocking=*/true);
      labels = torch::where(drop, torch::full_like(given, net_.num_classes), given);
    }
    const StepData data{batch.x, index, labels, step};
    const StepOutcome out = graphed_ ? graphed_->run(data)
                                     : pretrain_step(*group_, *objective_, data, rc.seed, rc.precision, channels_last_);
    StepOutput o;
    o.loss = out.loss;
    o.lr = out.lr;
    return o;
  }

  ResultModel result() override { return {net_, diffusion_, group_}; }
  std::vector<ModelGroup*> trained_groups() override { return {group_}; }

 private:
  PretrainConfig c_;
  Run* run_ = nullptr;
  DataStream* data_ = nullptr;
  models::NetworkConfig net_;
  DiffusionConfig diffusion_;
  std::unique_ptr<PretrainObjective> objective_;
  ModelGroup* group_ = nullptr;
  bool channels_last_ = false;
  std::optional<GraphedPretrainStep> graphed_;
  std::string describe_;
};

const bool registered = register_method(
    {"pretrain",
     {"ddpm"},
     "pretrain",
     "pre-training of one network with --objective=ddpm|rf|ncsn|trigflow|ict|scm (reflow with --reflow)",
     [] { return settings::flag_infos(pretrain_settings(), "pretrain"); },
     [](const settings::Assignments& a) { return std::make_unique<Pretrain>(pretrain_settings().build(a)); }});

}  // namespace
}  // namespace unidiff::experiments
