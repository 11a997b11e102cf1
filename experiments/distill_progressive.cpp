// experiments/distill_progressive.h.
#include "experiments/distill_progressive.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>

#include "core/error.h"
#include "core/json.h"
#include "core/log.h"
#include "core/rng.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "data/sampler.h"
#include "dist/communicator.h"
#include "dist/gradients.h"
#include "dist/world.h"
#include "core/fs.h"
#include "core/version.h"
#include "dist/checkpoint.h"
#include "experiments/checkpointing.h"
#include "experiments/metrics.h"
#include "experiments/model_group.h"
#include "experiments/model_io.h"
#include "experiments/run_util.h"
#include "models/keyed_dropout.h"
#include "objectives/distill/progressive.h"
#include "objectives/parameterization.h"
#include "objectives/schedule.h"

namespace unidiff::experiments {
namespace {

namespace fs = std::filesystem;
namespace o = objectives;

void validate(const TrainConfig& c) {
  const DistillConfig& d = c.distill;
  UD_CHECK_INPUT(!c.run_dir.empty(), "--run_dir is required");
  UD_CHECK_INPUT(!d.teacher.empty(), "--pd_teacher is required (a model file or run directory)");
  UD_CHECK_INPUT(c.precision == "fp32" && !c.channels_last, "--precision=bf16 and --channels_last apply to ",
                 "--method=ddpm; progressive distillation runs in float32 (its targets are two teacher steps)");
  UD_CHECK_INPUT(!c.cuda_graph, "--cuda_graph applies to --method=ddpm; progressive distillation runs its steps eagerly");
  UD_CHECK_INPUT(!c.fused_group_norm, "--fused_group_norm applies to --method=ddpm");
  UD_CHECK_INPUT(d.start_steps >= 2 && (d.start_steps & (d.start_steps - 1)) == 0,
                 "--pd_start_steps must be a power of two >= 2, got ", d.start_steps);
  UD_CHECK_INPUT(d.end_steps >= 1 && d.end_steps < d.start_steps &&
                     (d.end_steps & (d.end_steps - 1)) == 0,
                 "--pd_end_steps must be a power of two below --pd_start_steps, got ", d.end_steps);
  UD_CHECK_INPUT(d.round_steps > 0, "--pd_round_steps must be positive, got ", d.round_steps);
  UD_CHECK_INPUT(d.eval_samples >= 0, "--eval_samples must be >= 0, got ", d.eval_samples);
  UD_CHECK_INPUT(c.log_every > 0, "--log_every must be positive, got ", c.log_every);
  validate_optim(c.optim);
}

/// x0 from a network of the given parameterisation at time t (code index, float).
o::X0Fn x0_of(models::Network& net, o::Prediction prediction, const o::Schedule& schedule) {
  return [&net, prediction, &schedule](const torch::Tensor& z, const torch::Tensor& t) {
    const torch::Tensor out = net.forward(z, t);
    if (prediction == o::Prediction::kX0) return out;
    return o::from_prediction(prediction, out, z, t.to(torch::kFloat64), schedule)
        .x0.to(out.dtype());
  };
}

void copy_weights(const torch::nn::Module& from, torch::nn::Module& to) {
  torch::NoGradGuard no_grad;
  const auto a = from.parameters(), b = to.parameters();
  UD_ASSERT(a.size() == b.size(), "architectures differ");
  for (size_t i = 0; i < a.size(); ++i) b[i].copy_(a[i]);
}

}  // namespace

torch::Tensor progressive_step(ModelGroup& student, const o::X0Fn& teacher_x0, const o::X0Fn& student_x0,
                               const o::Schedule& schedule, const torch::Tensor& x0, const torch::Tensor& index,
                               int64_t n, uint32_t seed, int64_t global_step, int64_t round_step) {
  const auto s = static_cast<uint64_t>(global_step);
  const torch::Device device = x0.device();
  // Progress s = k / N with k uniform in 1..N, per sample (keyed; drawn on the device).
  const torch::Tensor k = rng::randint({seed, rng::Purpose::kTimestep}, s, index, n, device) + 1;
  const torch::Tensor eps =
      rng::normal({seed, rng::Purpose::kNoise}, s, index, x0.sizes().slice(1), device);
  student.begin_step();
  const models::DropoutKeyScope dropout_key({seed, s, index});  // keyed masks
  const o::PdLoss out = o::progressive_distillation_loss(teacher_x0, student_x0, schedule, x0, eps,
                                                         k.to(torch::kFloat64) / static_cast<double>(n), n);
  out.loss.backward();
  student.end_step(round_step);
  return out.loss.detach();
}

DistillResult distill_progressive(const TrainConfig& config) {
  validate(config);
  const torch::Device device = dist::select_device();
  // NCCL for a CUDA device (when built with it), MPI otherwise.
  auto comm = dist::make_communicator(device);
  const int world = comm->size(), rank = comm->rank();
  dist::configure_threads(config.threads);
  const DistillConfig& dc = config.distill;

  // Everything that can fail on bad input happens before the run directory is touched.
  const data::TensorDataset dataset = config.data.stream
                                          ? data::TensorDataset::open_streaming(config.data.path)
                                          : data::TensorDataset::load(config.data.path);
  LoadedModel base = load_model(dc.teacher, /*use_ema=*/true);
  UD_CHECK_INPUT(base.network.data_shape == dataset.sample_shape(), "the teacher '", dc.teacher,
                 "' models samples of shape ", torch::IntArrayRef(base.network.data_shape),
                 " but --data has ", torch::IntArrayRef(dataset.sample_shape()));
  const o::Prediction prediction = o::parse_prediction(base.diffusion.prediction);
  UD_CHECK_INPUT(prediction == o::Prediction::kEps || prediction == o::Prediction::kX0 ||
                     prediction == o::Prediction::kV,
                 "the teacher predicts ", base.diffusion.prediction, " (valid: eps, x0, v)");
  // Its tables on the device, where the steps read them (no copy, no host wait per step).
  const o::Schedule schedule = o::Schedule::from_ddpm(
      o::DdpmSchedule::make(o::parse_beta_schedule(base.diffusion.schedule), base.diffusion.timesteps,
                            base.diffusion.beta_start, base.diffusion.beta_end)
          .to(device));
  data::ShardedSampler sampler(dataset.size(), config.data.global_batch, world, rank, config.seed);
  // The settings a resume must not silently change.
  const std::map<std::string, std::string> settings = {
      {"method", "progressive"},
      {"pd_teacher", fs::absolute(dc.teacher).lexically_normal().string()},
      {"pd_start_steps", std::to_string(dc.start_steps)},
      {"pd_end_steps", std::to_string(dc.end_steps)},
      {"pd_round_steps", std::to_string(dc.round_steps)},
      {"data_batch", std::to_string(config.data.global_batch)},
      {"seed", std::to_string(config.seed)},
  };
  const std::optional<dist::CheckpointReader> ckpt = open_resume(config, settings);
  const bool resuming = ckpt.has_value();
  if (ckpt) {
    UD_CHECK_INPUT(ckpt->attr_int("pd_round_steps").value_or(0) >= dc.end_steps, "--run_dir '",
                   config.run_dir, "' already holds a finished distillation; choose another ",
                   "--run_dir or pass --overwrite");
  }
  if (rank == 0) {
    prepare_run_dir(config, resuming ? "" : "rounds.jsonl", /*fresh=*/!resuming);
    if (!resuming) std::ofstream(fs::path(config.run_dir) / "rounds.jsonl", std::ios::trunc);
    if (config.overwrite) unidiff::fs::remove_tree(dist::checkpoints_dir(config.run_dir));
  }
  comm->barrier();

  // Groups: the original teacher (for the comparison), the current teacher, the student.
  base.module->to(device);
  ModelGroups groups;
  groups.add(std::make_unique<ModelGroup>("base_teacher", ModelGroup::Role::kFrozen, base.module, *comm));
  auto teacher_net = models::make_network(base.network);
  teacher_net->to(device);
  copy_weights(*base.module, *teacher_net);
  groups.add(std::make_unique<ModelGroup>("teacher", ModelGroup::Role::kFrozen, teacher_net, *comm));
  auto student_net = models::make_network(base.network);
  student_net->to(device);
  copy_weights(*base.module, *student_net);

  int64_t rounds = 0;
  for (int64_t n = dc.start_steps / 2; n >= dc.end_steps; n /= 2) ++rounds;
  log::info("distill", detail::str_cat("progressive distillation of '", dc.teacher, "' (",
                                       base.diffusion.prediction, "-prediction, T=",
                                       base.diffusion.timesteps, "): ", dc.start_steps, " -> ",
                                       dc.end_steps, " steps in ", rounds, " rounds of ",
                                       dc.round_steps, " steps; ", world, " rank(s), global batch ",
                                       config.data.global_batch));

  DistillResult result;
  // Evaluation on rank 0: a fixed data subset and keyed sampling noise, the same for every round.
  const int64_t n_eval = std::min(dc.eval_samples, dataset.size() / 2);
  torch::Tensor eval_data, x_T;
  if (rank == 0 && n_eval > 0) {
    const torch::Tensor perm = rng::permutation({config.seed, rng::Purpose::kEval}, 0, dataset.size());
    eval_data = dataset.get(perm.slice(0, 0, n_eval)).x;
    result.data_sw = sliced_wasserstein(eval_data, dataset.get(perm.slice(0, n_eval, 2 * n_eval)).x,
                                        256, config.seed);
    x_T = rng::normal({config.seed, rng::Purpose::kSampling}, 0, rng::arange_indices(0, n_eval),
                      base.network.data_shape, device);
    const auto sample = o::pd_sample(x0_of(groups.get("base_teacher").net(), prediction, schedule),
                                     schedule, x_T, dc.start_steps);
    result.teacher_full_sw = sliced_wasserstein(sample.cpu(), eval_data, 256, config.seed);
    log::info("distill", detail::str_cat("teacher with ", dc.start_steps, " DDIM steps: SW ",
                                         result.teacher_full_sw, " (data vs data: ", result.data_sw, ")"));
  }

  std::ofstream metrics;
  if (rank == 0) metrics.open(fs::path(config.run_dir) / "metrics.jsonl", std::ios::app);
  data::LoaderOptions loader_options;
  loader_options.device = device;
  loader_options.seed = config.seed;
  // The data position of a resumed run, before the loader copies the sampler.
  if (ckpt) sampler.set_position(ckpt->attr_int("loader_position").value_or(0));
  data::Loader loader(dataset, sampler, loader_options);
  const auto start = std::chrono::steady_clock::now();
  int64_t global_step = 0;
  int64_t resume_n = 0, resume_step = 0;
  models::Network& teacher = groups.get("teacher").net();
  if (ckpt) {
    // Where the run stopped: round (its student steps), step in the round; the current teacher.
    resume_n = ckpt->attr_int("pd_round_steps").value_or(0);
    resume_step = ckpt->attr_int("pd_round_step").value_or(0);
    global_step = ckpt->step();
    torch::NoGradGuard no_grad;
    for (auto& p : teacher.named_parameters()) p.value().copy_(ckpt->read("teacher/params/" + p.key()));
    for (auto& p : student_net->named_parameters()) p.value().copy_(ckpt->read("student/params/" + p.key()));
    log::info("distill", detail::str_cat("resumed from ", ckpt->dir().string(), " (round of ",
                                         resume_n, " steps, step ", resume_step, ")"));
  }
  CheckpointPolicy policy(config.ckpt, *comm);
  const int64_t total_steps = rounds * dc.round_steps;
  for (int64_t n = resume_n > 0 ? resume_n : dc.start_steps / 2; n >= dc.end_steps; n /= 2) {
    // A fresh optimiser and EMA per round, the student starting from the current teacher; a
    // resume mid-round restores the round's optimiser and EMA.
    ModelGroup student("student", ModelGroup::Role::kTrained, student_net, *comm, config.optim,
                       config.dist, dc.round_steps);
    int64_t first = 0;
    if (ckpt && n == resume_n && resume_step > 0) {
      load_group(*ckpt, student);
      first = resume_step;
    }
    const auto save = [&](int64_t round_n, int64_t round_step) {
      dist::CheckpointWriter w(*comm, config.run_dir, global_step);
      save_settings(w, settings);
      w.set_attr("method", std::string("progressive"));
      w.set_attr("unidiff_version", std::string(kUnidiffVersion));
      w.set_attr("loader_position", loader.position());
      w.set_attr("global_batch", config.data.global_batch);
      w.set_attr("pd_round_steps", round_n);
      w.set_attr("pd_round_step", round_step);
      save_group(w, student);
      for (const auto& p : teacher.named_parameters()) w.add_replicated("teacher/params/" + p.key(), p.value());
      const fs::path dir = w.commit(config.ckpt.keep);
      if (rank == 0) log::info("distill", "checkpoint " + dir.string());
    };
    const o::X0Fn teacher_x0 = x0_of(teacher, prediction, schedule);
    const o::X0Fn student_x0 = x0_of(student.net(), prediction, schedule);
    torch::Tensor loss_sum = torch::zeros({}, torch::TensorOptions().device(device));
    int64_t window = 0;
    DistillRound round;
    round.steps = n;
    for (int64_t step = first; step < dc.round_steps; ++step) {
      const data::Batch batch = loader.next();
      // The sample indices key every draw of the step: on the device once (pinned: no host wait).
      const torch::Tensor index = batch.index.to(device, /*non_blocking=*/true);
      loss_sum += progressive_step(student, teacher_x0, student_x0, schedule, batch.x, index, n, config.seed,
                                   global_step, step);
      ++window;
      if ((step + 1) % config.log_every == 0 || step + 1 == dc.round_steps) {
        torch::Tensor mean = (loss_sum / static_cast<double>(window)).to(torch::kCPU, torch::kFloat64).reshape({1});
        comm->all_reduce(mean);
        round.final_loss = mean.item<double>() / world;
        UD_CHECK_INPUT(std::isfinite(round.final_loss), "distillation diverged: the loss is ",
                       round.final_loss, " (try a lower --optim_lr)");
        if (rank == 0) {
          char line[160];
          std::snprintf(line, sizeof(line), "round %ld steps  step %ld/%ld  loss %.5f", n, step + 1,
                        dc.round_steps, round.final_loss);
          log::info("distill", line);
          metrics << JsonLine().add("round_steps", n).add("step", global_step + 1)
                         .add("loss", round.final_loss).str() << "\n";
          metrics.flush();
        }
        loss_sum.zero_();
        window = 0;
      }
      ++global_step;
      // Within a round (its last step is saved below, as the start of the next round).
      if (step + 1 < dc.round_steps) {
        const CheckpointPolicy::Decision d = policy.after_step(global_step, global_step == total_steps);
        if (d.save) save(n, step + 1);
        if (d.stop) {
          result.stopped = true;
          log_stop(global_step, d.signal);
          return result;
        }
      }
    }
    // The round's EMA becomes the student's weights and the next round's teacher.
    student.ema().copy_to(student.net());
    copy_weights(student.net(), teacher);
    if (rank == 0) {
      if (n_eval > 0) {
        torch::NoGradGuard no_grad;
        round.student_sw = sliced_wasserstein(o::pd_sample(student_x0, schedule, x_T, n).cpu(),
                                              eval_data, 256, config.seed);
        round.teacher_sw = sliced_wasserstein(
            o::pd_sample(x0_of(groups.get("base_teacher").net(), prediction, schedule), schedule, x_T, n).cpu(),
            eval_data, 256, config.seed);
        log::info("distill", detail::str_cat(n, "-step student: SW ", round.student_sw,
                                             "; teacher with ", n, " DDIM steps: SW ", round.teacher_sw));
      }
      std::ofstream(fs::path(config.run_dir) / "rounds.jsonl", std::ios::app)
          << JsonLine().add("steps", n).add("student_sw", round.student_sw)
                 .add("teacher_sw", round.teacher_sw).add("teacher_full_sw", result.teacher_full_sw)
                 .add("data_sw", result.data_sw).add("loss", round.final_loss).str() << "\n";
      DiffusionConfig dcfg = base.diffusion;
      save_model(fs::path(config.run_dir) / ("student-" + std::to_string(n) + ".h5"), base.network,
                 dcfg, student.net(), student.ema(), global_step);
    }
    result.rounds.push_back(round);
    // The round's end is the next round's start (round n / 2, step 0; n / 2 < end: finished).
    const CheckpointPolicy::Decision d = policy.after_step(global_step, global_step == total_steps);
    if (d.save) save(n / 2, 0);
    if (d.stop) {
      result.stopped = true;
      log_stop(global_step, d.signal);
      return result;
    }
  }
  result.replica_divergence = dist::max_divergence(student_net->parameters(), *comm);
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (rank == 0) {
    log::info("distill", detail::str_cat("done in ", format_duration(total), "; students in ",
                                         config.run_dir, "/student-N.h5, table in rounds.jsonl"));
  }
  comm->barrier();
  return result;
}

}  // namespace unidiff::experiments
