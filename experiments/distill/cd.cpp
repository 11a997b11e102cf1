// Consistency distillation (--method=cd; Song et al. 2023, handbook 3.2.1, FORMULAS.md (46)) and the
// latent consistency model's distillation (--method=lcm; Luo et al. 2023, handbook 3.2.1 / 2.6.5):
// a student consistency function on a DDPM teacher's tables, initialised from the teacher, trained
// so that f_theta(x_{g_i}, g_i) matches the target network's f at the teacher's k-step DDIM
// solution from there (objectives/distill/consistency_distillation.h has the grid, the LCM boundary
// and the distances). Groups: `student` (trained, with the run's EMA for the result), `teacher`
// (frozen), `target` (frozen; theta- <- mu theta- + (1 - mu) theta after every step; mu = 0: the
// student itself without gradient, as iCT). A conditional teacher is called with each data
// sample's label. The result samples by multistep consistency sampling at the trailing steps (lcm).
//
// cd and lcm are one method with two sets of flags: cd's grid is --cd_intervals trailing steps and
// a conditional teacher is guided at the fixed --cd_cfg_scale; lcm's grid is every --lcm_skip-th
// step (T / skip of them), the distance pseudo-Huber, and a conditional teacher's guidance w is
// drawn per sample from [--lcm_w_min, --lcm_w_max] and given to a guidance-conditioned student
// (models/network.h, forward_guided; the teacher's CFG-augmented ODE is solved at that w, the
// student and the target are called at it), so that one student samples at any w of the range in
// one call per step (`unidiff sample --cfg_scale=w`). An unconditional teacher has no guidance.
//
// Keys: the grid index of each sample from (seed, timestep, step, global index), its noise from
// (seed, noise, step, global index), its w from (seed, guidance, step, global index): the same
// pairs on any number of ranks.
#include <cmath>
#include <optional>
#include <set>

#include "core/error.h"
#include "core/rng.h"
#include "experiments/distill/teacher.h"
#include "experiments/run/method.h"
#include "experiments/run/run.h"
#include "models/keyed_dropout.h"
#include "objectives/distill/consistency_distillation.h"
#include "objectives/pretrain/consistency.h"

namespace unidiff::experiments {
namespace {

namespace o = objectives;
using settings::Decl;

struct CdConfig {
  bool lcm = false;            ///< --method=lcm: the grid from skip, guidance drawn from [w_min, w_max]
  int64_t skip = 0;            ///< lcm: the grid's step (intervals = T / skip)
  double w_min = 1.0, w_max = 1.0;  ///< lcm: the range of guidance scales of a conditional teacher
  std::string teacher;
  int64_t intervals = 50;      ///< N: the grid's trailing timesteps (LCM: 50 of 1000, a skip of 20)
  int64_t teacher_steps = 1;   ///< k: the teacher's DDIM steps between the student's and the target's times
  double target_ema = 0.95;    ///< mu of the target network (0: the student itself)
  std::string loss = "l2";     ///< l2 or huber
  double huber_c = 0;          ///< the pseudo-Huber constant (0: iCT's 0.00054 sqrt(d))
  double cfg_scale = 1.0;      ///< guidance of a conditional teacher (uncond + w (cond - uncond))
  int64_t sample_steps = 2;    ///< the result's default multistep sampling steps
};

const settings::Table<CdConfig>& cd_settings() {
  static const settings::Table<CdConfig> t = [] {
    using C = CdConfig;
    namespace s = settings;
    s::Table<C> t;
    t.add(Decl("teacher", "distillation: the teacher (a model file or run directory; EMA weights)").guarded(),
          &C::teacher);
    t.add(Decl("cd_intervals", "cd: N, the grid's trailing timesteps of the teacher's T (then clean data)")
              .guarded()
              .check(s::positive()),
          &C::intervals);
    t.add(Decl("cd_teacher_steps", "cd: k, the teacher's DDIM steps from the student's grid time to the target's "
                                   "(generalised multi-step CD)")
              .guarded()
              .check(s::positive()),
          &C::teacher_steps);
    t.add(Decl("cd_target_ema", "cd: mu of the target network theta- <- mu theta- + (1 - mu) theta (0: the student "
                                "itself, without gradient)")
              .guarded()
              .check(s::unit_interval()),
          &C::target_ema);
    t.add(Decl("cd_loss", "cd: the distance, l2 (mean squared) or huber (pseudo-Huber)").guarded(), &C::loss);
    t.add(Decl("cd_huber_c", "cd: the pseudo-Huber constant (0: 0.00054 sqrt(elements), iCT's)")
              .guarded()
              .check(s::non_negative()),
          &C::huber_c);
    t.add(Decl("cd_cfg_scale", "cd: classifier-free guidance of a conditional teacher").guarded(), &C::cfg_scale);
    t.add(Decl("cd_sample_steps", "cd: the result's default sampling steps (multistep consistency sampling at the "
                                  "trailing steps, 'lcm')")
              .check(s::positive()),
          &C::sample_steps);
    return t;
  }();
  return t;
}

/// --method=lcm's flags, with LCM's defaults (pseudo-Huber distance, a skip of 20, four steps).
struct LcmConfig {
  std::string teacher;
  int64_t skip = 20;
  double w_min = 1.0, w_max = 4.0;
  int64_t teacher_steps = 1;
  double target_ema = 0.95;
  std::string loss = "huber";
  double huber_c = 0;
  int64_t sample_steps = 4;
};

const settings::Table<LcmConfig>& lcm_settings() {
  static const settings::Table<LcmConfig> t = [] {
    using C = LcmConfig;
    namespace s = settings;
    s::Table<C> t;
    t.add(Decl("teacher", "distillation: the teacher (a model file or run directory; EMA weights)").guarded(),
          &C::teacher);
    t.add(Decl("lcm_skip", "lcm: the grid's step; the student's times are every skip-th of the teacher's T "
                           "(T / skip of them, trailing)")
              .guarded()
              .check(s::positive()),
          &C::skip);
    t.add(Decl("lcm_w_min", "lcm: the smallest guidance scale w of a conditional teacher (uncond + w (cond - "
                            "uncond))")
              .guarded()
              .check(s::non_negative()),
          &C::w_min);
    t.add(Decl("lcm_w_max", "lcm: the largest guidance scale w (w drawn uniformly per sample)").guarded().check(
              s::non_negative()),
          &C::w_max);
    t.add(Decl("lcm_teacher_steps", "lcm: the teacher's DDIM steps between the student's and the target's times")
              .guarded()
              .check(s::positive()),
          &C::teacher_steps);
    t.add(Decl("lcm_target_ema", "lcm: mu of the target network (0: the student itself)").guarded().check(
              s::unit_interval()),
          &C::target_ema);
    t.add(Decl("lcm_loss", "lcm: the distance, huber (pseudo-Huber) or l2").guarded(), &C::loss);
    t.add(Decl("lcm_huber_c", "lcm: the pseudo-Huber constant (0: 0.00054 sqrt(elements))")
              .guarded()
              .check(s::non_negative()),
          &C::huber_c);
    t.add(Decl("lcm_sample_steps", "lcm: the result's default sampling steps (multistep consistency sampling)")
              .check(s::positive()),
          &C::sample_steps);
    return t;
  }();
  return t;
}

CdConfig lcm_config(const settings::Assignments& a) {
  const LcmConfig l = lcm_settings().build(a);
  CdConfig c;
  c.lcm = true;
  c.teacher = l.teacher;
  c.skip = l.skip;
  c.w_min = l.w_min;
  c.w_max = l.w_max;
  c.teacher_steps = l.teacher_steps;
  c.target_ema = l.target_ema;
  c.loss = l.loss;
  c.huber_c = l.huber_c;
  c.sample_steps = l.sample_steps;
  return c;
}

class ConsistencyDistillation : public Method {
 public:
  explicit ConsistencyDistillation(CdConfig c, std::optional<LcmConfig> lcm = std::nullopt)
      : c_(std::move(c)), lcm_flags_(std::move(lcm)) {}

  void setup(Run& run) override {
    run_ = &run;
    const RunConfig& rc = run.config();
    UD_CHECK_INPUT(rc.precision == "fp32" && !rc.channels_last && !rc.cuda_graph && !rc.fused_group_norm,
                   "--precision=bf16, --channels_last, --cuda_graph and --fused_group_norm apply to --method=pretrain; ",
                   "--method=cd runs in float32");
    const torch::Device device = run.device();
    data_ = &run.open_stream("data", rc.data.path, rc.data.global_batch);
    teacher_ = load_teacher(c_.teacher, data_->dataset().sample_shape(), device, "cd");
    const int64_t T = teacher_.schedule.ddpm.num_steps;
    if (c_.lcm) {
      UD_CHECK_INPUT(c_.skip < T, "--lcm_skip ", c_.skip, " leaves no grid in the teacher's T = ", T);
      c_.intervals = T / c_.skip;
      UD_CHECK_INPUT(c_.w_min <= c_.w_max, "--lcm_w_min ", c_.w_min, " exceeds --lcm_w_max ", c_.w_max);
    }
    const std::string steps_flag = c_.lcm ? "--lcm_teacher_steps " : "--cd_teacher_steps ";
    UD_CHECK_INPUT(c_.intervals <= T, "--cd_intervals ", c_.intervals, " exceeds the teacher's T = ", T);
    UD_CHECK_INPUT(c_.teacher_steps <= c_.intervals, steps_flag, c_.teacher_steps, " exceeds the grid's ",
                   c_.intervals, " intervals");
    const std::vector<int64_t> g = o::cd_grid(T, c_.intervals);
    grid_ = torch::tensor(g, torch::kInt64).to(device, torch::kFloat32);
    const models::NetworkConfig& net = teacher_.model.network;
    classes_ = net.num_classes;
    UD_CHECK_INPUT(c_.cfg_scale == 1.0 || classes_ > 0, "--cd_cfg_scale needs a class-conditional teacher");
    if (classes_ > 0) {
      UD_CHECK_INPUT(data_->dataset().labels().defined(), "the teacher '", c_.teacher, "' is conditional on ",
                     classes_, " classes; --data must carry labels");
    }
    int64_t elements = 1;
    for (int64_t d : net.data_shape) elements *= d;
    huber_c_ = c_.huber_c > 0 ? c_.huber_c : o::ict_huber_c(elements);
    UD_CHECK_INPUT(c_.loss == "l2" || c_.loss == "huber", "unknown ", c_.lcm ? "--lcm_loss" : "--cd_loss", " '",
                   c_.loss, "' (valid: l2, huber)");
    guided_ = c_.lcm && classes_ > 0;
    student_net_ = net;
    student_net_.guidance = guided_ ? 1 : 0;
    ModelGroups& groups = run.groups();
    // The student (and target): the teacher's weights; a guided student's guidance embedding, the
    // last of its parameters, starts at zero (models/network.h), so it starts as the teacher's
    // conditional model at every w.
    const auto copy_of_teacher = [&] { return copy_of(*teacher_.model.module, student_net_, device); };
    student_ = &groups.add(std::make_unique<ModelGroup>("student", ModelGroup::Role::kTrained, copy_of_teacher(),
                                                        run.comm(), rc.optim, rc.dist, rc.steps));
    frozen_teacher_ = &groups.add(std::make_unique<ModelGroup>("teacher", ModelGroup::Role::kFrozen,
                                                               teacher_.model.module, run.comm()));
    if (c_.target_ema > 0) {
      target_ = &groups.add(std::make_unique<ModelGroup>("target", ModelGroup::Role::kFrozen, copy_of_teacher(),
                                                         run.comm()));
    }
    describe_ = detail::str_cat(c_.lcm ? "latent consistency distillation (LCM) of '" : "consistency distillation of '",
                                c_.teacher, "' (",
                                teacher_.model.diffusion.prediction, "-prediction, T=", T, ") on ", c_.intervals,
                                " trailing steps, ", c_.teacher_steps, "-step teacher DDIM, ",
                                c_.target_ema > 0 ? detail::str_cat("target EMA ", c_.target_ema)
                                                  : std::string("the student as its own target"),
                                ", ", c_.loss, " distance",
                                guided_     ? detail::str_cat(", guidance w in [", c_.w_min, ", ", c_.w_max,
                                                              "] (a guidance-conditioned student)")
                                : classes_ > 0 ? detail::str_cat(", guidance ", c_.cfg_scale)
                                : c_.lcm       ? std::string(", no guidance (an unconditional teacher)")
                                               : std::string());
  }

  int64_t total_steps() const override { return run_->config().steps; }

  std::map<std::string, std::string> guard() const override {
    if (lcm_flags_) {
      LcmConfig resolved = *lcm_flags_;
      resolved.teacher = teacher_.path;
      return lcm_settings().guarded(resolved);
    }
    CdConfig resolved = c_;
    resolved.teacher = teacher_.path;
    return cd_settings().guarded(resolved);
  }

  std::string describe() const override { return describe_; }

  StepOutput step(int64_t step) override {
    const uint32_t seed = run_->seed();
    const torch::Device device = run_->device();
    const data::Batch batch = data_->next();
    const torch::Tensor index = batch.index.to(device, /*non_blocking=*/true);
    const torch::Tensor labels = classes_ > 0 ? batch.labels.to(device, /*non_blocking=*/true) : torch::Tensor();
    const torch::Tensor& x0 = batch.x;
    const auto s = static_cast<uint64_t>(step);
    const int64_t k = c_.teacher_steps;
    // The student's grid index i in [0, N - k] and the target's i + k.
    const torch::Tensor i = rng::randint({seed, rng::Purpose::kTimestep}, s, index, c_.intervals - k + 1, device);
    const torch::Tensor eps = rng::normal({seed, rng::Purpose::kNoise}, s, index, x0.sizes().slice(1), device);
    const torch::Tensor t = grid_.index_select(0, i), t_target = grid_.index_select(0, i + k);
    const torch::Tensor x_t = diffuse(vp_point(teacher_.schedule, t, x0), x0, eps);
    // The guidance of each sample: drawn from [w_min, w_max] for a guided student, else fixed.
    const torch::Tensor w =
        guided_ ? c_.w_min + (c_.w_max - c_.w_min) * rng::uniform({seed, rng::Purpose::kGuidance}, s, index, {}, device)
                : torch::Tensor();
    const models::DropoutKeyScope dropout({seed, s, index});  // the student's masks (and its own target's)
    torch::Tensor target;
    {
      torch::NoGradGuard no_grad;
      const o::EpsAt teacher = [&](const torch::Tensor& x, const torch::Tensor& tt) {
        torch::Tensor out;
        if (guided_) {  // the CFG-augmented teacher at each sample's w: uncond + w (cond - uncond)
          const torch::Tensor cond = frozen_teacher_->forward(x, tt, labels);
          const torch::Tensor uncond = frozen_teacher_->forward(x, tt, torch::full_like(labels, classes_));
          out = uncond + o::per_sample(w, x) * (cond - uncond);
        } else {
          out = group_output(*frozen_teacher_, x, tt, labels, c_.cfg_scale);
        }
        return denoised(teacher_.prediction, out, x, vp_point(teacher_.schedule, tt, x)).eps;
      };
      const torch::Tensor x_hat = o::cd_teacher_solve(teacher, teacher_.schedule, grid_, x_t, i, k);
      models::Network& target_net = target_ ? target_->net() : student_->net();
      target = consistency(target_net, x_hat, t_target, labels, w);
    }
    student_->begin_step();
    const torch::Tensor f = consistency(student_->net(), x_t, t, labels, w);
    const torch::Tensor loss = o::cd_distance(f, target, c_.loss, huber_c_).mean();
    loss.backward();
    StepOutput out;
    out.lr = student_->end_step(step);
    out.loss = loss.detach();
    if (target_) {
      torch::NoGradGuard no_grad;
      const auto a = student_->net().parameters(), b = target_->net().parameters();
      for (size_t j = 0; j < a.size(); ++j) b[j].lerp_(a[j], 1.0 - c_.target_ema);
    }
    return out;
  }

  ResultModel result() override {
    DiffusionConfig d = teacher_.model.diffusion;
    d.sampler = "lcm";
    d.sampler_steps = c_.sample_steps;
    d.sampler_spacing = "";
    d.sampler_grid = c_.intervals;  // sampled at its training grid's times
    return {student_net_, d, student_};
  }

  std::vector<ModelGroup*> trained_groups() override { return {student_}; }

 private:
  /// LCM's consistency function of a network at (x, t) (t float [B] code indices; -1: clean data),
  /// a guided network's at guidance w [B].
  torch::Tensor consistency(models::Network& net, const torch::Tensor& x, const torch::Tensor& t,
                            const torch::Tensor& labels, const torch::Tensor& w) {
    const torch::Tensor tn = t.clamp_min(0);  // the network is never asked at clean data's -1
    const torch::Tensor out = w.defined() ? net.forward_guided(x, tn, labels, w) : network_output(net, x, tn, labels);
    const torch::Tensor x0 = denoised(teacher_.prediction, out, x, vp_point(teacher_.schedule, tn, x)).x0;
    return o::lcm_consistency(x, x0, t);
  }

  CdConfig c_;
  std::optional<LcmConfig> lcm_flags_;  ///< --method=lcm's flags as given (its resume guard)
  models::NetworkConfig student_net_;   ///< the teacher's network, with a guidance embedding when guided_
  bool guided_ = false;                 ///< lcm of a conditional teacher: w drawn per sample, a guided student
  Run* run_ = nullptr;
  DataStream* data_ = nullptr;
  Teacher teacher_;
  ModelGroup *student_ = nullptr, *frozen_teacher_ = nullptr, *target_ = nullptr;
  torch::Tensor grid_;  ///< float [N + 1] code indices, -1 last
  int64_t classes_ = 0;
  double huber_c_ = 0;
  std::string describe_;
};

const bool registered = register_method(
    {"cd",
     {},
     "distill",
     "consistency distillation of --teacher into a few-step consistency model (--cd_*)",
     [] { return settings::flag_infos(cd_settings(), "cd"); },
     [](const settings::Assignments& a) { return std::make_unique<ConsistencyDistillation>(cd_settings().build(a)); }});
const bool registered_lcm = register_method(
    {"lcm",
     {},
     "distill",
     "latent consistency distillation of --teacher: skipping grid, guidance-conditioned student (--lcm_*)",
     [] { return settings::flag_infos(lcm_settings(), "lcm"); },
     [](const settings::Assignments& a) {
       return std::make_unique<ConsistencyDistillation>(lcm_config(a), lcm_settings().build(a));
     }});

}  // namespace
}  // namespace unidiff::experiments
