// Adversarial diffusion distillation (handbook 3.2.5, FORMULAS.md section 5; Sauer et al. 2023),
// --method=add. The student (initialised from the teacher's EMA weights) denoises real data
// diffused to one of its N timesteps (the trailing DDPM steps, keyed per sample) and is trained by
//   hinge GAN loss against a discriminator  +  lambda c(t) || x_student - stopgrad(x0_teacher) ||^2,
// where x0_teacher is the teacher's estimate from the student's sample re-noised to a keyed time t
// and c(t) = alpha_t. The discriminator is trainable heads on frozen features: the evaluation
// classifier's penultimate features for images (--add_classifier), or for vectors a small MLP on
// the sample itself, told the student's timestep. One step: a discriminator update (phase 1) on real data against the detached
// student samples, then the student's update (phase 0). The student samples with `lcm` at its N times.
#include <cmath>
#include <filesystem>
#include <set>

#include <torch/csrc/autograd/autograd.h>

#include "core/error.h"
#include "core/log.h"
#include "core/rng.h"
#include "experiments/classifier.h"
#include "experiments/distill/teacher.h"
#include "experiments/run/method.h"
#include "experiments/run/progress.h"
#include "experiments/run/run.h"
#include "models/keyed_dropout.h"
#include "objectives/distill/dmd.h"

namespace unidiff::experiments {
namespace {

namespace o = objectives;
using settings::Decl;

struct AddConfig {
  std::string teacher;
  std::string teacher_dtype = "fp32";  ///< the frozen teacher's storage: fp32 or bf16
  int64_t student_steps = 4;     ///< N: the student's timesteps, the trailing DDPM steps
  double distill_weight = 2.5;   ///< lambda of the distillation loss (2.5 in the paper)
  double t_min = 0.02;           ///< the teacher's re-noising times, as fractions of the schedule
  double t_max = 0.98;
  double r1 = 0;                 ///< R1 penalty gamma / 2 ||grad_x D(real)||^2 of the discriminator (0: none)
  std::string classifier;        ///< images: the frozen feature network of the discriminator
  OptimOverrides disc_optim;
};

const settings::Table<AddConfig>& add_settings() {
  static const settings::Table<AddConfig> t = [] {
    using C = AddConfig;
    namespace s = settings;
    s::Table<C> t;
    t.add(Decl("teacher", "distillation: the teacher (a model file or run directory; EMA weights)").guarded(),
          &C::teacher);
    t.add(Decl("teacher_dtype", "distillation: the frozen teacher's weights in fp32, or bf16 (half the memory; its "
                                "calls under bfloat16 autocast)"),
          &C::teacher_dtype);
    t.add(Decl("add_student_steps", "add: the student's timesteps N (the trailing DDPM steps; it samples in N steps)")
              .guarded()
              .check(s::positive()),
          &C::student_steps);
    t.add(Decl("add_distill_weight", "add: weight lambda of the distillation loss (the paper: 2.5)")
              .guarded()
              .check(s::non_negative()),
          &C::distill_weight);
    t.add(Decl("add_t_min", "add: smallest time the student's sample is re-noised to for the teacher (a fraction of "
                            "the schedule)")
              .guarded()
              .check(s::unit_interval()),
          &C::t_min);
    t.add(Decl("add_t_max", "add: largest such time").guarded().check(s::at_most(1)), &C::t_max);
    t.add(Decl("add_r1", "add: R1 penalty gamma of the discriminator, gamma / 2 E ||grad_x D(x_real)||^2 (0: none)")
              .guarded()
              .check(s::non_negative()),
          &C::r1);
    t.add(Decl("add_classifier", "add on images: the classifier file whose frozen features the discriminator's heads "
                                 "read ('unidiff eval train-classifier')"),
          &C::classifier);
    t.include(optim_override_settings(), "disc_", &C::disc_optim);
    return t;
  }();
  return t;
}

/// The discriminator: heads on frozen classifier features (images) or an MLP on the sample
/// (vectors), told the student's timestep (t / T appended to the features): the student's outputs
/// of every timestep are judged against the data one timestep at a time, not as one mixture.
class Discriminator : public torch::nn::Module {
 public:
  Discriminator(models::Classifier features, int64_t dim) : features_(std::move(features)) {
    const bool images = static_cast<bool>(features_);
    if (images) {
      features_->eval();
      for (auto& p : features_->parameters()) p.set_requires_grad(false);
    }
    head_ = register_module("head", models::Head((images ? features_->options.features() : dim) + 1,
                                                 images ? 0 : 128, images ? 1 : 3));
  }
  /// Logits [B] of samples x at the student's times t_frac (t / T, [B]).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t_frac) {
    const torch::Tensor f = features_ ? features_->features(x) : x.reshape({x.size(0), -1});
    return head_->forward(torch::cat({f, t_frac.view({-1, 1}).to(f.scalar_type())}, 1));
  }

 private:
  models::Classifier features_{nullptr};  // not registered: frozen, not trained or checkpointed
  models::Head head_{nullptr};
};

class Add : public Method {
 public:
  explicit Add(AddConfig c) : c_(std::move(c)) {}

  void setup(Run& run) override {
    run_ = &run;
    const RunConfig& rc = run.config();
    UD_CHECK_INPUT(rc.precision == "fp32" && !rc.channels_last && !rc.cuda_graph && !rc.fused_group_norm,
                   "--precision=bf16, --channels_last, --cuda_graph and --fused_group_norm apply to --method=pretrain; ",
                   "--method=add runs in float32");
    UD_CHECK_INPUT(c_.t_min < c_.t_max, "--add_t_min must be below --add_t_max, got ", c_.t_min, " and ", c_.t_max);
    validate_optim(c_.disc_optim.resolve(rc.optim), "disc_");
    const torch::Device device = run.device();
    data_ = &run.open_stream("data", rc.data.path, rc.data.global_batch);
    const std::vector<int64_t> shape = data_->dataset().sample_shape();
    teacher_ = load_teacher(c_.teacher, shape, device, "add");
    const int64_t T = teacher_.schedule.ddpm.num_steps;
    UD_CHECK_INPUT(c_.student_steps <= T, "--add_student_steps ", c_.student_steps, " exceeds T = ", T);
    times_ = o::generator_times(T, c_.student_steps);
    times_t_ = torch::tensor(times_, torch::kFloat32).to(device);  // once: no copy per step
    t_lo_ = static_cast<int64_t>(std::floor(c_.t_min * static_cast<double>(T - 1)));
    t_hi_ = static_cast<int64_t>(std::ceil(c_.t_max * static_cast<double>(T - 1)));
    const bool images = shape.size() == 3;
    models::Classifier features{nullptr};
    if (images) {
      UD_CHECK_INPUT(!c_.classifier.empty(), "--method=add on images needs --add_classifier (the discriminator's ",
                     "frozen features; make one with 'unidiff eval train-classifier')");
      features = load_classifier(c_.classifier).net;
      features->to(device);
    } else {
      UD_CHECK_INPUT(c_.classifier.empty(), "--add_classifier is for images; on vectors the discriminator is an MLP");
    }
    auto student = copy_of(*teacher_.model.module, teacher_.model.network, device);
    ModelGroups& groups = run.groups();
    student_ = &groups.add(std::make_unique<ModelGroup>("student", ModelGroup::Role::kTrained, student, run.comm(),
                                                        rc.optim, rc.dist, rc.steps));
    real_ = &groups.add(std::make_unique<ModelGroup>("real", ModelGroup::Role::kFrozen, teacher_.model.module,
                                                     run.comm()));
    torch::manual_seed(rc.seed);
    int64_t dim = 1;
    for (int64_t s : shape) dim *= s;
    auto disc = std::make_shared<Discriminator>(features, dim);
    disc->to(device);
    DistConfig d = rc.dist;
    d.zero = c_.disc_optim.zero.value_or(d.zero);
    disc_ = &groups.add(std::make_unique<ModelGroup>("disc", ModelGroup::Role::kTrained, disc, run.comm(),
                                                     c_.disc_optim.resolve(rc.optim), d, rc.steps));
    // Last: every copy of the teacher above was made from its float32 weights.
    real_->store_as(teacher_dtype(c_.teacher_dtype));
    describe_ = detail::str_cat("ADD of '", c_.teacher, "' (", teacher_.model.diffusion.prediction,
                                "-prediction, T=", T, ") into a ", c_.student_steps,
                                "-step student; distillation weight ", c_.distill_weight, "; discriminator ",
                                images ? "heads on the classifier's features" : "an MLP on the sample");
  }

  int64_t total_steps() const override { return run_->config().steps; }

  std::map<std::string, std::string> guard() const override {
    AddConfig resolved = c_;
    resolved.teacher = teacher_.path;
    return add_settings().guarded(resolved);
  }

  std::string describe() const override { return describe_; }

  StepOutput step(int64_t step) override {
    const uint32_t seed = run_->config().seed;
    const data::Batch batch = data_->next();
    const torch::Device device = run_->device();
    const torch::Tensor index = batch.index.to(device, /*non_blocking=*/true);
    const torch::Tensor labels = teacher_.model.network.num_classes > 0 ? batch.labels.to(device) : torch::Tensor();
    const auto draw = [&](rng::Purpose p, uint8_t phase) { return rng::Stream{seed, p}.in(phase, 0); };
    const auto s = static_cast<uint64_t>(step);
    // The student on real data diffused to one of its timesteps (keyed per sample).
    student_->begin_step();
    const models::DropoutKeyScope dropout({seed, s, index});
    const torch::Tensor k = rng::randint(draw(rng::Purpose::kGeneratorStep, 0), s, index, c_.student_steps, device);
    const torch::Tensor t_s = times_t_.index_select(0, k);
    const VpPoint ps = vp_point(teacher_.schedule, t_s, batch.x);
    const torch::Tensor x_s = diffuse(ps, batch.x, rng::normal(draw(rng::Purpose::kNoise, 0), s, index,
                                                               batch.x.sizes().slice(1), device));
    const torch::Tensor x = denoised(teacher_.prediction, network_output(student_->net(), x_s, t_s, labels), x_s, ps).x0;
    // Phase 1: the discriminator, real data against the detached student samples.
    disc_->begin_step();
    const torch::Tensor real_x = c_.r1 > 0 ? batch.x.detach().requires_grad_(true) : batch.x;
    const torch::Tensor t_frac = t_s / static_cast<double>(teacher_.schedule.ddpm.num_steps);
    const torch::Tensor real_logits = discriminate(real_x, t_frac);
    torch::Tensor d_loss = o::hinge_discriminator_loss(real_logits, discriminate(x.detach(), t_frac));
    if (c_.r1 > 0) {
      const torch::Tensor g = torch::autograd::grad({real_logits.sum()}, {real_x}, {}, /*retain_graph=*/true,
                                                    /*create_graph=*/true)[0];
      d_loss = d_loss + 0.5 * c_.r1 * g.pow(2).reshape({g.size(0), -1}).sum(1).mean();
    }
    d_loss.backward();
    disc_->end_step(step);
    // Phase 0: the student, by the discriminator (held) and the teacher's x0 of its re-noised sample.
    torch::Tensor adv;
    {
      const ModelGroup::NoGradScope held(*disc_);
      adv = o::hinge_generator_loss(discriminate(x, t_frac));
    }
    torch::Tensor distill;
    {
      const torch::Tensor t = (rng::randint(draw(rng::Purpose::kTimestep, 0), s, index, t_hi_ - t_lo_ + 1, device) +
                               t_lo_).to(torch::kFloat32);
      const VpPoint p = vp_point(teacher_.schedule, t, x);
      torch::Tensor target;
      {
        torch::NoGradGuard no_grad;
        const torch::Tensor x_t = diffuse(p, x, rng::normal(draw(rng::Purpose::kNoise, 1), s, index,
                                                            x.sizes().slice(1), device));
        target = denoised(teacher_.prediction, group_output(*real_, x_t, t, labels), x_t, p).x0;
      }
      distill = (p.alpha * (x - target).pow(2)).mean();  // c(t) = alpha_t
    }
    const torch::Tensor loss = adv + c_.distill_weight * distill;
    loss.backward();
    StepOutput out;
    out.lr = student_->end_step(step);
    out.loss = loss.detach();
    out.stats["loss_adv"] = adv.detach();
    out.stats["loss_distill"] = distill.detach();
    out.stats["loss_disc"] = d_loss.detach();
    return out;
  }

  ResultModel result() override {
    DiffusionConfig d = teacher_.model.diffusion;
    d.sampler = "lcm";
    d.sampler_steps = c_.student_steps;
    d.sampler_spacing = "";
    d.sampler_grid = 0;
    return {teacher_.model.network, d, student_};
  }

  std::vector<ModelGroup*> trained_groups() override { return {student_, disc_}; }

 private:
  torch::Tensor discriminate(const torch::Tensor& x, const torch::Tensor& t_frac) {
    return static_cast<Discriminator&>(disc_->module()).forward(x, t_frac);
  }

  AddConfig c_;
  Run* run_ = nullptr;
  DataStream* data_ = nullptr;
  Teacher teacher_;
  std::vector<int64_t> times_;
  torch::Tensor times_t_;
  int64_t t_lo_ = 0, t_hi_ = 0;
  ModelGroup *student_ = nullptr, *real_ = nullptr, *disc_ = nullptr;
  std::string describe_;
};

const bool registered = register_method(
    {"add", {}, "distill",
     "adversarial diffusion distillation: a few-step student by a discriminator and the teacher's estimates",
     [] { return settings::flag_infos(add_settings(), ""); },
     [](const settings::Assignments& a) { return std::make_unique<Add>(add_settings().build(a)); }});

}  // namespace
}  // namespace unidiff::experiments
