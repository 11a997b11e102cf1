// Distribution matching (handbook 3.2.2-3.2.4, FORMULAS.md section 5): DMD2 and DMD (--method=dmd),
// VSD (--method=vsd) and SDS (--method=sds), one method class in three modes.
//
// Groups: `generator` (trained, from the teacher's EMA weights, with EMA), `real` (the teacher,
// frozen), `fake` (trained from the teacher on the generator's samples; not in SDS) and, with
// --dmd_gan_weight > 0, `disc` (a head on the fake score's bottleneck features, trained with it).
// One run step is K = --dmd_fake_updates fake-score (and discriminator) updates, each keyed as
// sub-step k of phase 1, then one generator update (phase 0); the real data of the GAN's
// discriminator come from the stream `data` (their draws keyed as phase 2), the regression pairs of
// DMD (v1) from the stream `pairs`. A few-step generator (--dmd_generator_steps = N) trains on the
// states of its own N-step sampler (backward simulation) at the trailing DDPM times and is sampled
// by `lcm` at those times.
#include <cmath>
#include <filesystem>
#include <optional>
#include <set>

#include "core/error.h"
#include "core/h5.h"
#include "core/log.h"
#include "core/rng.h"
#include "experiments/distill/teacher.h"
#include "experiments/run/method.h"
#include "experiments/run/progress.h"
#include "experiments/run/run.h"
#include "experiments/sample.h"
#include "models/keyed_dropout.h"
#include "objectives/distill/dmd.h"

namespace unidiff::experiments {
namespace {

namespace o = objectives;
using settings::Decl;

enum class Mode { kDmd, kVsd, kSds };

struct DmdConfig {
  std::string teacher;
  std::string teacher_dtype = "fp32";  ///< the frozen teacher's storage: fp32 or bf16
  double t_min = 0.02;           ///< the matching gradient's times, as fractions of the schedule
  double t_max = 0.98;
  int64_t fake_updates = 5;      ///< fake-score (and discriminator) updates per generator update
  int64_t generator_steps = 1;   ///< N: 1, 2 or 4 steps at the trailing DDPM times
  std::string backward_sim = "last";  ///< N > 1: train the last step's output (last) or a keyed step each (uniform)
  double cfg_scale = 1.0;        ///< guidance of the real score for a conditional teacher
  double gan_weight = 0;         ///< DMD2: weight of the generator's non-saturating GAN loss (0: no GAN)
  double disc_weight = 1e-2;     ///< DMD2: weight of the discriminator's loss in the fake-score update
  double regression_weight = 0;  ///< DMD (v1): weight of the regression loss on (noise, teacher sample) pairs
  std::string pairs;             ///< DMD (v1): the pairs, a samples file of the teacher (`unidiff sample`)
  OptimOverrides fake_optim, disc_optim;
};

const settings::Table<DmdConfig>& dmd_settings() {
  static const settings::Table<DmdConfig> t = [] {
    using C = DmdConfig;
    namespace s = settings;
    s::Table<C> t;
    t.add(Decl("teacher", "distillation: the teacher (a model file or run directory; EMA weights)").guarded(),
          &C::teacher);
    t.add(Decl("teacher_dtype", "distillation: the frozen teacher's weights in fp32, or bf16 (half the memory; its "
                                "calls under bfloat16 autocast)"),
          &C::teacher_dtype);
    t.add(Decl("dmd_t_min", "distribution matching: smallest diffusion time of the matching gradient, as a fraction "
                            "of the schedule")
              .guarded()
              .check(s::unit_interval()),
          &C::t_min);
    t.add(Decl("dmd_t_max", "distribution matching: largest such time (a fraction of the schedule)")
              .guarded()
              .check(s::at_most(1)),
          &C::t_max);
    t.add(Decl("dmd_fake_updates", "dmd, vsd: fake-score (and discriminator) updates per generator update (DMD2: 5)")
              .guarded()
              .check(s::positive()),
          &C::fake_updates);
    t.add(Decl("dmd_generator_steps", "distribution matching: the generator's steps N (1, 2 or 4), at the trailing "
                                      "DDPM times, trained on its own sampler's states")
              .guarded()
              .check(s::positive()),
          &C::generator_steps);
    t.add(Decl("dmd_backward_sim", "distribution matching, N > 1: which step's output trains: last (the sampler's "
                                   "result, its input from running the first N - 1 steps) or uniform (a keyed step per "
                                   "sample; the matching of a mixture of steps, which drifts on the toy sets)")
              .guarded(),
          &C::backward_sim);
    t.add(Decl("dmd_cfg_scale", "distribution matching: classifier-free guidance of a conditional teacher's score")
              .guarded(),
          &C::cfg_scale);
    t.add(Decl("dmd_gan_weight", "dmd: weight of the generator's GAN loss (DMD2; 0: no GAN, no discriminator)")
              .guarded()
              .check(s::non_negative()),
          &C::gan_weight);
    t.add(Decl("dmd_disc_weight", "dmd: weight of the discriminator's loss in the fake score's update")
              .guarded()
              .check(s::non_negative()),
          &C::disc_weight);
    t.add(Decl("dmd_regression_weight", "dmd: weight of DMD's regression loss on --dmd_pairs (0: none)")
              .guarded()
              .check(s::non_negative()),
          &C::regression_weight);
    t.add(Decl("dmd_pairs", "dmd: (noise, teacher sample) pairs: a samples file of the teacher drawn by a "
                            "deterministic sampler ('unidiff sample --sampler=ddim')"),
          &C::pairs);
    t.include(optim_override_settings(), "fake_", &C::fake_optim);
    t.include(optim_override_settings(), "disc_", &C::disc_optim);
    return t;
  }();
  return t;
}

/// The flags each mode takes: DMD all; VSD no GAN and no regression; SDS no fake score either.
std::vector<settings::FlagInfo> mode_flags(Mode mode) {
  std::vector<settings::FlagInfo> out;
  for (auto& f : settings::flag_infos(dmd_settings(), "")) {
    const std::string& n = f.name;
    const bool gan_or_pairs = n.rfind("dmd_gan", 0) == 0 || n == "dmd_disc_weight" || n.rfind("disc_", 0) == 0 ||
                              n.rfind("dmd_regression", 0) == 0 || n == "dmd_pairs";
    const bool fake = n == "dmd_fake_updates" || n.rfind("fake_", 0) == 0;
    if (mode != Mode::kDmd && gan_or_pairs) continue;
    if (mode == Mode::kSds && fake) continue;
    out.push_back(std::move(f));
  }
  return out;
}

const char* mode_name(Mode m) { return m == Mode::kDmd ? "dmd" : m == Mode::kVsd ? "vsd" : "sds"; }

/// A rank's rows of the generator's global batch: r, r + W, ... of 0..B-1 (world-size independent keys).
torch::Tensor my_rows(int64_t global, int world, int rank) {
  return torch::arange(rank, global, world, torch::kInt64);
}

class DistributionMatching : public Method {
 public:
  DistributionMatching(Mode mode, DmdConfig c) : mode_(mode), c_(std::move(c)) {}

  void setup(Run& run) override {
    run_ = &run;
    const RunConfig& rc = run.config();
    const std::string m = mode_name(mode_);
    UD_CHECK_INPUT(rc.precision == "fp32" && !rc.channels_last && !rc.cuda_graph && !rc.fused_group_norm,
                   "--precision=bf16, --channels_last, --cuda_graph and --fused_group_norm apply to --method=pretrain; ",
                   "--method=", m, " runs in float32");
    UD_CHECK_INPUT(c_.backward_sim == "last" || c_.backward_sim == "uniform", "--dmd_backward_sim '", c_.backward_sim,
                   "' is unknown (valid: last, uniform)");
    UD_CHECK_INPUT(c_.t_min < c_.t_max, "--dmd_t_min must be below --dmd_t_max, got ", c_.t_min, " and ", c_.t_max);
    UD_CHECK_INPUT(c_.regression_weight == 0 || c_.generator_steps == 1,
                   "--dmd_regression_weight trains a one-step generator (--dmd_generator_steps=1)");
    UD_CHECK_INPUT((c_.regression_weight > 0) == !c_.pairs.empty(),
                   "--dmd_regression_weight > 0 and --dmd_pairs go together (DMD's regression on teacher pairs)");
    validate_optim(c_.fake_optim.resolve(rc.optim), "fake_");
    validate_optim(c_.disc_optim.resolve(rc.optim), "disc_");
    const torch::Device device = run.device();
    data_ = &run.open_stream("data", rc.data.path, rc.data.global_batch);
    teacher_ = load_teacher(c_.teacher, data_->dataset().sample_shape(), device, m);
    const int64_t T = teacher_.schedule.ddpm.num_steps;
    UD_CHECK_INPUT(c_.generator_steps <= T, "--dmd_generator_steps ", c_.generator_steps, " exceeds T = ", T);
    times_ = o::generator_times(T, c_.generator_steps);
    t_lo_ = static_cast<int64_t>(std::floor(c_.t_min * static_cast<double>(T - 1)));
    t_hi_ = static_cast<int64_t>(std::ceil(c_.t_max * static_cast<double>(T - 1)));
    const models::NetworkConfig& net = teacher_.model.network;
    classes_ = net.num_classes;
    UD_CHECK_INPUT(c_.cfg_scale == 1.0 || classes_ > 0, "--dmd_cfg_scale needs a class-conditional teacher");
    if (!c_.pairs.empty()) {
      const PairsSource pairs = deterministic_pairs(c_.pairs, "--dmd_pairs");
      UD_CHECK_INPUT(pairs.objective == "ddpm", "'", c_.pairs, "' holds samples of a ", pairs.objective,
                     " model; DMD's pairs are the teacher's");
      pairs_seed_ = pairs.seed;
      pairs_ = &run.open_stream("pairs", c_.pairs, rc.data.global_batch);
      UD_CHECK_INPUT(pairs_->dataset().sample_shape() == net.data_shape, "--dmd_pairs holds samples of shape ",
                     torch::IntArrayRef(pairs_->dataset().sample_shape()), "; the teacher makes ",
                     torch::IntArrayRef(net.data_shape));
    }
    ModelGroups& groups = run.groups();
    const auto copy_of_teacher = [&] { return copy_of(*teacher_.model.module, net, device); };
    const int64_t steps = rc.steps, k = c_.fake_updates;
    generator_ = &groups.add(std::make_unique<ModelGroup>("generator", ModelGroup::Role::kTrained, copy_of_teacher(),
                                                          run.comm(), rc.optim, rc.dist, steps));
    real_ = &groups.add(std::make_unique<ModelGroup>("real", ModelGroup::Role::kFrozen, teacher_.model.module,
                                                     run.comm()));
    if (mode_ != Mode::kSds) {
      DistConfig d = rc.dist;
      d.zero = c_.fake_optim.zero.value_or(d.zero);
      fake_ = &groups.add(std::make_unique<ModelGroup>("fake", ModelGroup::Role::kTrained, copy_of_teacher(), run.comm(),
                                                       c_.fake_optim.resolve(rc.optim), d, steps * k));
    }
    if (c_.gan_weight > 0) {
      const int64_t features = fake_->net().feature_dim();
      UD_CHECK_INPUT(features > 0, "the ", net.arch, " has no bottleneck features for the GAN's head");
      torch::manual_seed(rc.seed);
      auto head = std::make_shared<models::HeadImpl>(features);
      head->to(device);
      DistConfig d = rc.dist;
      d.zero = c_.disc_optim.zero.value_or(d.zero);
      disc_ = &groups.add(std::make_unique<ModelGroup>("disc", ModelGroup::Role::kTrained, head, run.comm(),
                                                       c_.disc_optim.resolve(rc.optim), d, steps * k));
    }
    // Last: every copy of the teacher above was made from its float32 weights.
    real_->store_as(teacher_dtype(c_.teacher_dtype));
    describe_ = detail::str_cat(
        mode_ == Mode::kDmd ? (c_.gan_weight > 0 ? "DMD2" : "DMD") : mode_ == Mode::kVsd ? "VSD" : "SDS",
        " of '", c_.teacher, "' (", teacher_.model.diffusion.prediction, "-prediction, T=", T, ") into a ",
        c_.generator_steps, "-step generator; t in [", t_lo_, ", ", t_hi_, "]",
        mode_ == Mode::kSds ? "" : detail::str_cat("; ", k, " fake-score updates per generator update"),
        c_.gan_weight > 0 ? detail::str_cat("; GAN weight ", c_.gan_weight) : "",
        c_.regression_weight > 0 ? detail::str_cat("; regression weight ", c_.regression_weight) : "");
  }

  int64_t total_steps() const override { return run_->config().steps; }

  std::map<std::string, std::string> guard() const override {
    DmdConfig resolved = c_;
    resolved.teacher = teacher_.path;
    if (!resolved.pairs.empty()) resolved.pairs = std::filesystem::absolute(c_.pairs).lexically_normal().string();
    std::map<std::string, std::string> g;
    const std::set<std::string> mine = [&] {
      std::set<std::string> names;
      for (const auto& f : mode_flags(mode_)) names.insert(f.name);
      return names;
    }();
    for (const auto& [k, v] : dmd_settings().guarded(resolved)) {
      if (mine.count(k)) g[k] = v;
    }
    return g;
  }

  std::string describe() const override { return describe_; }

  StepOutput step(int64_t step) override {
    const RunConfig& rc = run_->config();
    StepOutput out;
    if (fake_ != nullptr) {
      torch::Tensor fake_sum, disc_sum;
      for (int64_t k = 0; k < c_.fake_updates; ++k) {
        const auto [f, d] = fake_update(step, k);
        fake_sum = fake_sum.defined() ? fake_sum + f : f;
        if (d.defined()) disc_sum = disc_sum.defined() ? disc_sum + d : d;
      }
      out.stats["loss_fake"] = fake_sum / static_cast<double>(c_.fake_updates);
      if (disc_sum.defined()) out.stats["loss_disc"] = disc_sum / static_cast<double>(c_.fake_updates);
    }
    // Phase 0: the generator's update.
    const Keys keys{rc.seed, 0, 0, step};
    generator_->begin_step();
    const Generated gen = generate(keys, /*grad=*/true);
    const torch::Tensor index = rows();
    const torch::Tensor t = keys.randint(rng::Purpose::kTimestep, index, t_hi_ - t_lo_ + 1) + t_lo_;
    const torch::Tensor tf = t.to(torch::kFloat32);
    const torch::Tensor eps = keys.normal(rng::Purpose::kNoise, index, gen.x.sizes().slice(1));
    const VpPoint p = vp_point(teacher_.schedule, tf, gen.x);
    torch::Tensor g;
    {
      torch::NoGradGuard no_grad;
      const torch::Tensor x_t = diffuse(p, gen.x, eps);
      const o::Denoised real = denoised(teacher_.prediction,
                                        group_output(*real_, x_t, tf, gen.labels, c_.cfg_scale), x_t, p);
      if (mode_ == Mode::kSds) {
        g = real.eps - eps;  // SDS: the injected noise in place of the fake score, w(t) = 1
      } else {
        const o::Denoised fake = denoised(teacher_.prediction, network_output(fake_->net(), x_t, tf, gen.labels), x_t, p);
        const torch::Tensor c = mode_ == Mode::kDmd ? o::dmd_weight(gen.x, real.x0)
                                                    : (p.alpha / p.sigma).reshape({-1});  // VSD: eps_real - eps_fake
        g = o::matching_direction(fake.x0, real.x0, c);
      }
    }
    torch::Tensor loss = o::direction_loss(gen.x, g);
    out.stats["loss_match"] = loss.detach();
    if (disc_ != nullptr) {
      const ModelGroup::NoGradScope f(*fake_), d(*disc_);
      const torch::Tensor logits = discriminate(gen.x, gen.labels, keys, index);
      const torch::Tensor gan = o::gan_generator_loss(logits);
      out.stats["loss_gan"] = gan.detach();
      loss = loss + c_.gan_weight * gan;
    }
    if (pairs_ != nullptr) {
      const torch::Tensor reg = regression_loss();
      out.stats["loss_reg"] = reg.detach();
      loss = loss + c_.regression_weight * reg;
    }
    loss.backward();
    out.lr = generator_->end_step(step);
    out.loss = loss.detach();
    return out;
  }

  ResultModel result() override {
    DiffusionConfig d = teacher_.model.diffusion;
    d.sampler = "lcm";
    d.sampler_steps = c_.generator_steps;
    d.sampler_spacing = "";
    d.sampler_grid = 0;
    return {teacher_.model.network, d, generator_};
  }

  std::vector<ModelGroup*> trained_groups() override {
    std::vector<ModelGroup*> g{generator_};
    if (fake_ != nullptr) g.push_back(fake_);
    if (disc_ != nullptr) g.push_back(disc_);
    return g;
  }

 private:
  /// The keyed draws of one (phase, sub-step) of run step `step`, per generated sample.
  struct Keys {
    uint32_t seed;
    uint8_t phase;
    uint16_t sub;
    int64_t step;
    rng::Stream stream(rng::Purpose p) const { return rng::Stream{seed, p}.in(phase, sub); }
    torch::Tensor normal(rng::Purpose p, const torch::Tensor& index, at::IntArrayRef shape) const {
      return rng::normal(stream(p), static_cast<uint64_t>(step), index, shape, index.device());
    }
    torch::Tensor randint(rng::Purpose p, const torch::Tensor& index, int64_t n) const {
      return rng::randint(stream(p), static_cast<uint64_t>(step), index, n, index.device());
    }
  };

  struct Generated {
    torch::Tensor x;       ///< the generator's samples [b, ...]
    torch::Tensor labels;  ///< their classes (conditional) or undefined
  };

  /// This rank's rows of the generator's global batch, on the device.
  torch::Tensor rows() const {
    return my_rows(run_->config().data.global_batch, run_->world(), run_->rank()).to(run_->device());
  }

  /// x0 of the generator network at (x, t) for `labels`.
  torch::Tensor generator_x0(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& labels) {
    const VpPoint p = vp_point(teacher_.schedule, t, x);
    return denoised(teacher_.prediction, network_output(generator_->net(), x, t, labels), x, p).x0;
  }

  /// The generator's samples for this rank's rows: noise x_T at its first time, or (N > 1) the
  /// state of its own sampler before a keyed step k (backward simulation), then one generator call.
  Generated generate(const Keys& keys, bool grad) {
    const torch::Tensor index = rows();
    const std::vector<int64_t>& shape = teacher_.model.network.data_shape;
    Generated g;
    if (classes_ > 0) g.labels = keys.randint(rng::Purpose::kClassLabel, index, classes_);
    const torch::Tensor x_T = keys.normal(rng::Purpose::kSampling, index, shape);
    const models::DropoutKeyScope dropout({keys.seed, static_cast<uint64_t>(keys.step), index});
    o::GeneratorInput in{x_T, torch::full({index.size(0)}, static_cast<double>(times_[0]),
                                          torch::dtype(torch::kFloat32).device(x_T.device()))};
    if (times_.size() > 1) {
      // Which step each sample trains: the last, or a keyed one (drawn on the host: the simulation's
      // length is read there).
      const auto n = static_cast<int64_t>(times_.size());
      const torch::Tensor k = c_.backward_sim == "last"
                                  ? torch::full({index.size(0)}, n - 1, torch::kInt64)
                                  : rng::randint(keys.stream(rng::Purpose::kGeneratorStep),
                                                 static_cast<uint64_t>(keys.step), index.cpu(), n);
      std::vector<int64_t> renoise_shape{static_cast<int64_t>(times_.size()) - 1};
      renoise_shape.insert(renoise_shape.end(), shape.begin(), shape.end());
      const torch::Tensor z = keys.normal(rng::Purpose::kBackwardSim, index, renoise_shape);
      const o::NoiseFn noise = [&z](int64_t i) { return z.select(1, i); };
      in = o::backward_simulation([&](const torch::Tensor& x, const torch::Tensor& t) { return generator_x0(x, t, g.labels); },
                                  teacher_.schedule, x_T, times_, k, noise);
    }
    if (grad) {
      g.x = generator_x0(in.x, in.t, g.labels);
    } else {
      torch::NoGradGuard no_grad;
      g.x = generator_x0(in.x, in.t, g.labels);
    }
    return g;
  }

  /// The discriminator's logits on samples x diffused at keyed times (the GAN's own draws).
  torch::Tensor discriminate(const torch::Tensor& x, const torch::Tensor& labels, const Keys& keys,
                             const torch::Tensor& index) {
    const torch::Tensor t = keys.randint(rng::Purpose::kGanTimestep, index, t_hi_ - t_lo_ + 1) + t_lo_;
    const torch::Tensor tf = t.to(torch::kFloat32);
    const torch::Tensor n = keys.normal(rng::Purpose::kGanNoise, index, x.sizes().slice(1));
    const torch::Tensor x_t = diffuse(vp_point(teacher_.schedule, tf, x), x, n);
    const torch::Tensor features = fake_->net().features(x_t, tf, fake_->net().num_classes() > 0 ? labels : torch::Tensor());
    return disc_->module().as<models::HeadImpl>()->forward(features);
  }

  /// Phase 1, sub-step k: the fake score's diffusion loss on the generator's samples (and the
  /// discriminator's loss on real data against them). Returns the two losses (detached).
  std::pair<torch::Tensor, torch::Tensor> fake_update(int64_t step, int64_t k) {
    const Keys keys{run_->config().seed, 1, static_cast<uint16_t>(k), step};
    const Generated gen = generate(keys, /*grad=*/false);
    const torch::Tensor index = rows();
    const int64_t T = teacher_.schedule.ddpm.num_steps;
    fake_->begin_step();
    if (disc_ != nullptr) disc_->begin_step();
    const models::DropoutKeyScope dropout({keys.seed, static_cast<uint64_t>(step), index});
    // The teacher's own diffusion loss, in its parameterisation.
    const torch::Tensor t = keys.randint(rng::Purpose::kTimestep, index, T).to(torch::kFloat32);
    const torch::Tensor eps = keys.normal(rng::Purpose::kNoise, index, gen.x.sizes().slice(1));
    const VpPoint p = vp_point(teacher_.schedule, t, gen.x);
    const torch::Tensor x_t = diffuse(p, gen.x, eps);
    const torch::Tensor target = o::vp_target(teacher_.prediction, {gen.x, eps}, p.alpha, p.sigma);
    const torch::Tensor diffusion = (network_output(fake_->net(), x_t, t, gen.labels) - target).pow(2).mean();
    torch::Tensor loss = diffusion, disc;
    if (disc_ != nullptr) {
      const data::Batch real = data_->next();
      const torch::Tensor real_index = real.index.to(run_->device(), /*non_blocking=*/true);
      const torch::Tensor real_labels = classes_ > 0 ? real.labels.to(run_->device()) : torch::Tensor();
      const Keys real_keys{keys.seed, 2, keys.sub, step};
      disc = o::gan_discriminator_loss(discriminate(real.x, real_labels, real_keys, real_index),
                                       discriminate(gen.x, gen.labels, keys, index));
      loss = loss + c_.disc_weight * disc;
    }
    loss.backward();
    const int64_t sub_step = step * c_.fake_updates + k;
    fake_->end_step(sub_step);
    if (disc_ != nullptr) disc_->end_step(sub_step);
    return {diffusion.detach(), disc.defined() ? disc.detach() : torch::Tensor()};
  }

  /// DMD (v1): the one-step generator against the teacher's samples of the pairs' noise (each
  /// pair's noise regenerated from its key, as reflow does).
  torch::Tensor regression_loss() {
    const data::Batch b = pairs_->next();
    const torch::Tensor index = b.index.to(run_->device(), /*non_blocking=*/true);
    const torch::Tensor z = rng::normal({pairs_seed_, rng::Purpose::kSampling}, 0, index,
                                        teacher_.model.network.data_shape, run_->device());
    const torch::Tensor t = torch::full({z.size(0)}, static_cast<double>(times_[0]),
                                        torch::dtype(torch::kFloat32).device(z.device()));
    return (generator_x0(z, t, {}) - b.x).pow(2).mean();
  }

  Mode mode_;
  DmdConfig c_;
  Run* run_ = nullptr;
  DataStream* data_ = nullptr;
  DataStream* pairs_ = nullptr;
  uint32_t pairs_seed_ = 0;
  Teacher teacher_;
  std::vector<int64_t> times_;
  int64_t t_lo_ = 0, t_hi_ = 0, classes_ = 0;
  ModelGroup *generator_ = nullptr, *real_ = nullptr, *fake_ = nullptr, *disc_ = nullptr;
  std::string describe_;
};

MethodInfo info(Mode mode, const char* summary) {
  return {mode_name(mode), {}, "distill", summary, [mode] { return mode_flags(mode); },
          [mode](const settings::Assignments& a) {
            return std::make_unique<DistributionMatching>(mode, dmd_settings().build(a));
          }};
}

const bool registered =
    register_method(info(Mode::kDmd, "DMD2 (--dmd_gan_weight > 0) or DMD (--dmd_regression_weight > 0): a few-step "
                                     "generator matched to --teacher through a trained fake score")) &&
    register_method(info(Mode::kVsd, "variational score distillation: the generator by the eps difference of the real "
                                     "and the fake score")) &&
    register_method(info(Mode::kSds, "score distillation sampling: the generator by the real score against the "
                                     "injected noise (mode-seeking)"));

}  // namespace
}  // namespace unidiff::experiments
