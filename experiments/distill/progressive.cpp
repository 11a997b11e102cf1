// experiments/distill/progressive.h, and the method's registration.
#include "experiments/distill/progressive.h"

#include <filesystem>
#include <fstream>
#include <optional>

#include "core/error.h"
#include "core/json.h"
#include "core/log.h"
#include "core/rng.h"
#include "experiments/distill/teacher.h"
#include "experiments/metrics.h"
#include "experiments/model_io.h"
#include "experiments/run/method.h"
#include "experiments/run/progress.h"
#include "experiments/run/run.h"
#include "models/keyed_dropout.h"
#include "objectives/parameterization.h"

namespace unidiff::experiments {

namespace fs = std::filesystem;
namespace o = objectives;

const settings::Table<ProgressiveConfig>& progressive_settings() {
  static const settings::Table<ProgressiveConfig> t = [] {
    using settings::Decl;
    using C = ProgressiveConfig;
    settings::Table<C> t;
    t.add(Decl("teacher", "distillation: the teacher (a model file or run directory; EMA weights)")
              .alias("pd_teacher")
              .guarded(),
          &C::teacher);
    t.add(Decl("pd_start_steps", "progressive distillation: the teacher's sampling steps (a power of two; round 1's "
                                 "student takes half)")
              .guarded(),
          &C::start_steps);
    t.add(Decl("pd_end_steps", "progressive distillation: the last round's student steps (a power of two)").guarded(),
          &C::end_steps);
    t.add(Decl("pd_round_steps", "progressive distillation: optimizer steps per round").guarded(), &C::round_steps);
    t.add(Decl("pd_guided", "progressive distillation: guided distillation of a class-conditional teacher (a first "
                            "stage into a guidance-conditioned student, then the rounds at each sample's w)")
              .guarded(),
          &C::guided);
    t.add(Decl("pd_w_min", "guided progressive distillation: the smallest guidance scale w (uncond + w (cond - "
                           "uncond))")
              .guarded()
              .check(settings::non_negative()),
          &C::w_min);
    t.add(Decl("pd_w_max", "guided progressive distillation: the largest w (drawn uniformly per sample)")
              .guarded()
              .check(settings::non_negative()),
          &C::w_max);
    return t;
  }();
  return t;
}

torch::Tensor progressive_step(ModelGroup& student, const o::X0Fn& teacher_x0, const o::X0Fn& student_x0,
                               const o::Schedule& schedule, const torch::Tensor& x0, const torch::Tensor& index,
                               int64_t n, uint32_t seed, int64_t global_step, int64_t round_step, bool first_stage) {
  const auto s = static_cast<uint64_t>(global_step);
  const torch::Device device = x0.device();
  // Progress s = k / N with k uniform in 1..N, per sample (keyed; drawn on the device).
  const torch::Tensor k = rng::randint({seed, rng::Purpose::kTimestep}, s, index, n, device) + 1;
  const torch::Tensor eps = rng::normal({seed, rng::Purpose::kNoise}, s, index, x0.sizes().slice(1), device);
  student.begin_step();
  const models::DropoutKeyScope dropout_key({seed, s, index});  // keyed masks
  const torch::Tensor progress = k.to(torch::kFloat64) / static_cast<double>(n);
  const o::PdLoss out = first_stage
                            ? o::guidance_distillation_loss(teacher_x0, student_x0, schedule, x0, eps, progress)
                            : o::progressive_distillation_loss(teacher_x0, student_x0, schedule, x0, eps, progress, n);
  out.loss.backward();
  student.end_step(round_step);
  return out.loss.detach();
}

namespace {

/// x0 from a network of the given parameterisation at time t (code index, float), for classes
/// `labels` (int64 [B]) of a class-conditional network (undefined: unconditional), a
/// guidance-conditioned network's at guidance w (float [B]).
o::X0Fn x0_of(models::Network& net, o::Prediction prediction, const o::Schedule& schedule,
              const torch::Tensor& labels = {}, const torch::Tensor& w = {}) {
  return [&net, prediction, &schedule, labels, w](const torch::Tensor& z, const torch::Tensor& t) {
    const torch::Tensor out = w.defined()        ? net.forward_guided(z, t, labels, w)
                              : labels.defined() ? net.forward_cond(z, t, labels)
                                                 : net.forward(z, t);
    if (prediction == o::Prediction::kX0) return out;
    return o::from_prediction(prediction, out, z, t.to(torch::kFloat64), schedule).x0.to(out.dtype());
  };
}

void copy_weights(const torch::nn::Module& from, torch::nn::Module& to) {
  torch::NoGradGuard no_grad;
  const auto a = from.parameters(), b = to.parameters();
  UD_ASSERT(a.size() == b.size(), "architectures differ");
  for (size_t i = 0; i < a.size(); ++i) b[i].copy_(a[i]);
}

bool power_of_two(int64_t v) { return v >= 1 && (v & (v - 1)) == 0; }

class Progressive : public Method {
 public:
  explicit Progressive(ProgressiveConfig c) : c_(std::move(c)) {}

  void setup(Run& run) override {
    run_ = &run;
    const RunConfig& rc = run.config();
    UD_CHECK_INPUT(!c_.teacher.empty(), "--teacher is required (a model file or run directory)");
    UD_CHECK_INPUT(rc.precision == "fp32" && !rc.channels_last, "--precision=bf16 and --channels_last apply to ",
                   "--method=pretrain; progressive distillation runs in float32 (its targets are two teacher steps)");
    UD_CHECK_INPUT(!rc.cuda_graph, "--cuda_graph applies to --method=pretrain; progressive distillation runs its "
                                   "steps eagerly");
    UD_CHECK_INPUT(!rc.fused_group_norm, "--fused_group_norm applies to --method=pretrain");
    UD_CHECK_INPUT(c_.start_steps >= 2 && power_of_two(c_.start_steps),
                   "--pd_start_steps must be a power of two >= 2, got ", c_.start_steps);
    UD_CHECK_INPUT(power_of_two(c_.end_steps) && c_.end_steps < c_.start_steps,
                   "--pd_end_steps must be a power of two below --pd_start_steps, got ", c_.end_steps);
    UD_CHECK_INPUT(c_.round_steps > 0, "--pd_round_steps must be positive, got ", c_.round_steps);
    const torch::Device device = run.device();
    data_ = &run.open_stream("data", rc.data.path, rc.data.global_batch);
    const data::TensorDataset& dataset = data_->dataset();
    LoadedModel base = load_model(c_.teacher, /*use_ema=*/true);
    UD_CHECK_INPUT(base.network.data_shape == dataset.sample_shape(), "the teacher '", c_.teacher,
                   "' models samples of shape ", torch::IntArrayRef(base.network.data_shape), " but --data has ",
                   torch::IntArrayRef(dataset.sample_shape()));
    prediction_ = o::parse_prediction(base.diffusion.prediction);
    UD_CHECK_INPUT(prediction_ == o::Prediction::kEps || prediction_ == o::Prediction::kX0 ||
                       prediction_ == o::Prediction::kV,
                   "the teacher predicts ", base.diffusion.prediction, " (valid: eps, x0, v)");
    network_ = base.network;
    diffusion_ = base.diffusion;
    // A class-conditional teacher is distilled as the conditional model it is: teacher and student
    // take each data sample's label (the data must carry labels of the teacher's classes).
    UD_CHECK_INPUT(!c_.guided || base.network.num_classes > 0, "--pd_guided distils classifier-free guidance: the ",
                   "teacher '", c_.teacher, "' is unconditional");
    UD_CHECK_INPUT(c_.w_min <= c_.w_max, "--pd_w_min ", c_.w_min, " exceeds --pd_w_max ", c_.w_max);
    if (c_.guided) {
      network_.guidance = 1;
      eval_w_ = (c_.w_min + c_.w_max) / 2;
    }
    if (base.network.num_classes > 0) {
      UD_CHECK_INPUT(dataset.labels().defined() && dataset.num_classes() == base.network.num_classes, "the teacher '",
                     c_.teacher, "' is conditional on ", base.network.num_classes, " classes; --data must carry ",
                     "labels of as many (it has ", dataset.labels().defined() ? dataset.num_classes() : 0, ")");
    }
    teacher_path_ = fs::absolute(c_.teacher).lexically_normal().string();
    // Its tables on the device, where the steps read them (no copy, no host wait per step).
    schedule_ = o::Schedule::from_ddpm(o::DdpmSchedule::make(o::parse_beta_schedule(base.diffusion.schedule),
                                                             base.diffusion.timesteps, base.diffusion.beta_start,
                                                             base.diffusion.beta_end)
                                           .to(device));
    first_n_ = c_.guided ? c_.start_steps : c_.start_steps / 2;  // guided: the first stage at start_steps
    rounds_ = 0;
    for (int64_t n = first_n_; n >= c_.end_steps; n /= 2) ++rounds_;
    // Groups: the original teacher (for the comparison), the current teacher, the student.
    base.module->to(device);
    ModelGroups& groups = run.groups();
    base_ = &groups.add(std::make_unique<ModelGroup>("base_teacher", ModelGroup::Role::kFrozen, base.module,
                                                     run.comm()));
    auto teacher_net = copy_of(*base.module, network_, device);
    teacher_ = &groups.add(std::make_unique<ModelGroup>("teacher", ModelGroup::Role::kFrozen, teacher_net,
                                                        run.comm()));
    auto student_net = copy_of(*base.module, network_, device);
    student_ = &groups.add(std::make_unique<ModelGroup>("student", ModelGroup::Role::kTrained, student_net,
                                                        run.comm(), rc.optim, rc.dist, c_.round_steps));
    n_ = result_n_ = first_n_;
    describe_ = detail::str_cat(c_.guided ? "guided " : "", "progressive distillation of '", c_.teacher, "' (",
                                base.diffusion.prediction, "-prediction, T=", base.diffusion.timesteps, "): ",
                                c_.start_steps, " -> ", c_.end_steps, " steps in ", rounds_, " rounds of ",
                                c_.round_steps, " steps",
                                c_.guided ? detail::str_cat(" (the first the guidance stage), w in [", c_.w_min, ", ",
                                                            c_.w_max, "], compared at w = ", eval_w_)
                                          : std::string());
    // Evaluation on rank 0: a fixed data subset and keyed sampling noise, the same for every round.
    n_eval_ = std::min(rc.eval_samples, dataset.size() / 2);
    if (run.rank() == 0 && n_eval_ > 0) {
      const torch::Tensor perm = rng::permutation({rc.seed, rng::Purpose::kEval}, 0, dataset.size());
      eval_data_ = dataset.get(perm.slice(0, 0, n_eval_)).x;
      data_sw_ = sliced_wasserstein(eval_data_, dataset.get(perm.slice(0, n_eval_, 2 * n_eval_)).x, 256, rc.seed);
      x_T_ = rng::normal({rc.seed, rng::Purpose::kSampling}, 0, rng::arange_indices(0, n_eval_),
                         base.network.data_shape, device);
      // A conditional model's evaluation samples: sample i of class i mod K (as `unidiff sample`).
      if (base.network.num_classes > 0) {
        eval_labels_ = torch::arange(n_eval_, torch::dtype(torch::kInt64).device(device)) % base.network.num_classes;
      }
      if (c_.guided) eval_w_tensor_ = torch::full({n_eval_}, eval_w_, torch::dtype(torch::kFloat32).device(device));
      teacher_full_sw_ = sliced_wasserstein(sample_base(c_.start_steps), eval_data_, 256, rc.seed);
      log::info("train", detail::str_cat("teacher with ", c_.start_steps, " DDIM steps: SW ", teacher_full_sw_,
                                         " (data vs data: ", data_sw_, ")"));
    }
  }

  int64_t total_steps() const override { return rounds_ * c_.round_steps; }

  std::map<std::string, std::string> guard() const override {
    ProgressiveConfig resolved = c_;
    resolved.teacher = teacher_path_;
    return progressive_settings().guarded(resolved);
  }

  std::string describe() const override { return describe_; }

  void start(bool resuming) override {
    if (run_->rank() == 0 && !resuming) std::ofstream(fs::path(run_->config().run_dir) / "rounds.jsonl", std::ios::trunc);
  }

  void save_state(dist::CheckpointWriter& w) override {
    w.set_attr("pd_round_steps", n_);
    w.set_attr("pd_round_step", round_step_);
  }

  void load_state(const dist::CheckpointReader& r) override {
    n_ = r.attr_int("pd_round_steps").value_or(first_n_);
    round_step_ = r.attr_int("pd_round_step").value_or(0);
    result_n_ = round_step_ == 0 && n_ < first_n_ ? n_ * 2 : n_;
    // At a round's start the student trains afresh from its weights (earlier checkpoints held the
    // finished round's optimizer state there).
    if (round_step_ == 0) student_->restart(c_.round_steps);
    log::info("train", detail::str_cat("progressive distillation resumes in the round of ", n_, " steps, step ",
                                       round_step_));
  }

  StepOutput step(int64_t step) override {
    const RunConfig& rc = run_->config();
    const data::Batch batch = data_->next();
    // The sample indices key every draw of the step: on the device once (pinned: no host wait).
    const torch::Tensor index = batch.index.to(run_->device(), /*non_blocking=*/true);
    result_n_ = n_;
    last_n_ = n_;
    last_round_step_ = round_step_;
    StepOutput out;
    out.lr = learning_rate(student_->optim(), round_step_, c_.round_steps);
    const torch::Tensor labels =
        network_.num_classes > 0 ? batch.labels.to(run_->device(), /*non_blocking=*/true) : torch::Tensor();
    if (c_.guided) {
      // Each sample's w from (seed, guidance, step, index): the same on any number of ranks.
      const torch::Tensor w = c_.w_min + (c_.w_max - c_.w_min) * rng::uniform({rc.seed, rng::Purpose::kGuidance},
                                                                                 static_cast<uint64_t>(step), index, {},
                                                                                 run_->device());
      const bool first_stage = n_ == c_.start_steps;
      const o::X0Fn teacher = first_stage ? guided_base(labels, w) : x0_of(teacher_->net(), prediction_, schedule_,
                                                                           labels, w);
      out.loss = progressive_step(*student_, teacher, x0_of(student_->net(), prediction_, schedule_, labels, w),
                                  schedule_, batch.x, index, n_, rc.seed, step, round_step_, first_stage);
    } else {
      out.loss = progressive_step(*student_, x0_of(teacher_->net(), prediction_, schedule_, labels),
                                  x0_of(student_->net(), prediction_, schedule_, labels), schedule_, batch.x, index,
                                  n_, rc.seed, step, round_step_);
    }
    if (++round_step_ == c_.round_steps) {
      end_round(step + 1);
      out.boundary = true;
    }
    return out;
  }

  std::string progress(int64_t) const override {
    if (c_.guided && last_n_ == c_.start_steps) {
      return detail::str_cat("guidance stage at ", last_n_, " steps (", last_round_step_ + 1, "/", c_.round_steps, ")");
    }
    return detail::str_cat("round of ", last_n_, " steps (", last_round_step_ + 1, "/", c_.round_steps, ")");
  }
  std::map<std::string, double> metrics(int64_t) const override {
    return {{"round_steps", static_cast<double>(last_n_)}};
  }

  void logged(int64_t step, double loss) override {
    if (pending_ && pending_->step == step + 1 && run_->rank() == 0) {
      std::ofstream(fs::path(run_->config().run_dir) / "rounds.jsonl", std::ios::app)
          << JsonLine().add("steps", pending_->n).add("student_sw", pending_->student_sw)
                 .add("teacher_sw", pending_->teacher_sw).add("teacher_full_sw", teacher_full_sw_)
                 .add("data_sw", data_sw_).add("loss", loss).str() << "\n";
    }
    if (pending_ && pending_->step == step + 1) pending_.reset();
  }

  ResultModel result() override {
    DiffusionConfig d = diffusion_;
    d.sampler = "ddim";
    d.sampler_steps = result_n_;
    d.sampler_spacing = "uniform";
    return {network_, d, student_};
  }
  std::vector<ModelGroup*> trained_groups() override { return {student_}; }

 private:
  /// The original teacher with classifier-free guidance at each sample's w.
  o::X0Fn guided_base(const torch::Tensor& labels, const torch::Tensor& w) {
    return o::guided_x0(x0_of(base_->net(), prediction_, schedule_, labels),
                        x0_of(base_->net(), prediction_, schedule_, torch::full_like(labels, network_.num_classes)), w);
  }

  /// The original teacher's samples from x_T with n DDIM steps (rank 0's evaluation; guided: at
  /// the range's midpoint).
  torch::Tensor sample_base(int64_t n) {
    torch::NoGradGuard no_grad;
    const o::X0Fn base = c_.guided ? guided_base(eval_labels_, eval_w_tensor_)
                                   : x0_of(base_->net(), prediction_, schedule_, eval_labels_);
    return o::pd_sample(base, schedule_, x_T_, n).cpu();
  }

  /// After the round's last step (`global_step` steps done): the EMA becomes the student and the
  /// next round's teacher; rank 0 compares it with the original teacher and writes student-N.h5.
  void end_round(int64_t global_step) {
    const uint32_t seed = run_->seed();
    student_->ema().copy_to(student_->net());
    copy_weights(student_->net(), teacher_->net());
    if (run_->rank() == 0) {
      Pending p{global_step, n_, 0, 0};
      if (n_eval_ > 0) {
        torch::NoGradGuard no_grad;
        p.student_sw = sliced_wasserstein(
            o::pd_sample(x0_of(student_->net(), prediction_, schedule_, eval_labels_, eval_w_tensor_), schedule_,
                         x_T_, n_)
                .cpu(),
            eval_data_, 256,
            seed);
        p.teacher_sw = sliced_wasserstein(sample_base(n_), eval_data_, 256, seed);
        log::info("train", detail::str_cat(n_, "-step student: SW ", p.student_sw, "; teacher with ", n_,
                                           " DDIM steps: SW ", p.teacher_sw));
      }
      pending_ = p;
      result_n_ = n_;
      const ResultModel r = result();
      save_model(fs::path(run_->config().run_dir) / ("student-" + std::to_string(n_) + ".h5"), r.network,
                 r.diffusion, student_->net(), student_->ema(), global_step);
    } else {
      pending_ = Pending{global_step, n_, 0, 0};
    }
    result_n_ = n_;
    n_ /= 2;
    round_step_ = 0;
    if (n_ >= c_.end_steps) student_->restart(c_.round_steps);  // a fresh optimizer and EMA per round
  }

  struct Pending {
    int64_t step, n;
    double student_sw, teacher_sw;
  };

  ProgressiveConfig c_;
  Run* run_ = nullptr;
  DataStream* data_ = nullptr;
  models::NetworkConfig network_;
  DiffusionConfig diffusion_;
  std::string teacher_path_;
  o::Prediction prediction_ = o::Prediction::kEps;
  o::Schedule schedule_;
  ModelGroup *base_ = nullptr, *teacher_ = nullptr, *student_ = nullptr;
  int64_t rounds_ = 0;
  int64_t first_n_ = 0;                     ///< the first round's steps (guided: the first stage's, start_steps)
  double eval_w_ = 0;                       ///< guided: the comparisons' w
  torch::Tensor eval_w_tensor_;             ///< guided: eval_w_ per evaluation sample (rank 0)
  int64_t n_ = 0, round_step_ = 0;          ///< the round in progress and its next step
  int64_t last_n_ = 0, last_round_step_ = 0;  ///< of the step just run (for its progress line)
  int64_t result_n_ = 0;                    ///< the steps the student's weights are for
  std::string describe_;
  int64_t n_eval_ = 0;
  torch::Tensor eval_data_, x_T_, eval_labels_;
  double data_sw_ = 0, teacher_full_sw_ = 0;
  std::optional<Pending> pending_;
};

const bool registered = register_method(
    {"progressive",
     {},
     "distill",
     "progressive distillation of --teacher, halving its DDIM steps each round (--pd_*)",
     [] { return settings::flag_infos(progressive_settings(), "progressive"); },
     [](const settings::Assignments& a) { return std::make_unique<Progressive>(progressive_settings().build(a)); }});

}  // namespace
}  // namespace unidiff::experiments
