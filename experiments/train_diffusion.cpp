#include "experiments/train_diffusion.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <numbers>
#include <optional>
#include <sstream>

#include "core/error.h"
#include "core/json.h"
#include "core/log.h"
#include "core/fs.h"
#include "core/rng.h"
#include "core/version.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "data/sampler.h"
#include "dist/communicator.h"
#include "dist/gradients.h"
#include "dist/world.h"
#include "dist/checkpoint.h"
#include "dist/signals.h"
#include "experiments/checkpointing.h"
#include "experiments/model_group.h"
#include "experiments/model_io.h"
#include "experiments/run_util.h"
#include "models/ema.h"
#include "objectives/ddpm_schedule.h"
#include "objectives/losses.h"
#include "objectives/parameterization.h"
#include "objectives/schedule.h"

namespace unidiff::experiments {
namespace {

namespace fs = std::filesystem;

void validate(const TrainConfig& c) {
  UD_CHECK_INPUT(!c.run_dir.empty(), "--run_dir is required");
  UD_CHECK_INPUT(c.steps > 0, "--train_steps must be positive, got ", c.steps);
  UD_CHECK_INPUT(c.log_every > 0, "--log_every must be positive, got ", c.log_every);
  if (c.diffusion.schedule == "rf") {
    UD_CHECK_INPUT(c.diffusion.prediction == "rf-velocity", "--diffusion_schedule=rf trains ",
                   "--prediction=rf-velocity (u = eps - x0), got '", c.diffusion.prediction, "'");
    UD_CHECK_INPUT(c.diffusion.rf_time == "uniform" || c.diffusion.rf_time == "logit-normal",
                   "--rf_time '", c.diffusion.rf_time, "' is unknown (valid: uniform, logit-normal)");
  } else {
    UD_CHECK_INPUT(c.diffusion.prediction == "eps" || c.diffusion.prediction == "x0" ||
                       c.diffusion.prediction == "v",
                   "--prediction '", c.diffusion.prediction,
                   "' is not supported on a DDPM schedule (valid: eps, x0, v; rf-velocity needs ",
                   "--diffusion_schedule=rf)");
  }
  validate_optim(c.optim);
}

}  // namespace

TrainResult train_diffusion(const TrainConfig& config) {
  validate(config);
  const torch::Device device = dist::select_device();
  // NCCL for a CUDA device (when built with it), MPI otherwise.
  auto comm = dist::make_communicator(device);
  const int world = comm->size(), rank = comm->rank();
  const int threads = dist::configure_threads(config.threads);

  // Everything that can fail on bad input happens before the run directory is touched.
  const data::TensorDataset dataset = config.data.stream
                                          ? data::TensorDataset::open_streaming(config.data.path)
                                          : data::TensorDataset::load(config.data.path);
  models::NetworkConfig net_cfg = config.network;
  net_cfg.data_shape = dataset.sample_shape();
  if (config.diffusion.class_conditional) {
    UD_CHECK_INPUT(dataset.num_classes() > 0, "--class_conditional needs a dataset with /labels");
    UD_CHECK_INPUT(config.diffusion.cfg_drop >= 0 && config.diffusion.cfg_drop < 1,
                   "--cfg_drop must be in [0, 1), got ", config.diffusion.cfg_drop);
    net_cfg.num_classes = dataset.num_classes();
  }
  torch::manual_seed(config.seed);  // same initial weights on every rank (then broadcast anyway)
  auto model = models::make_network(net_cfg);
  // Rectified flow / flow matching (FORMULAS.md section 3): x_t = (1 - t) x0 + t eps, t in (0, 1),
  // target u = eps - x0 (the stored RF convention, data -> noise); the network sees 1000 t.
  const bool flow = config.diffusion.schedule == "rf";
  const objectives::DdpmSchedule schedule =
      flow ? objectives::DdpmSchedule::make(objectives::BetaSchedule::kLinear, config.diffusion.timesteps)
           : objectives::DdpmSchedule::make(objectives::parse_beta_schedule(config.diffusion.schedule),
                                            config.diffusion.timesteps, config.diffusion.beta_start,
                                            config.diffusion.beta_end);
  const objectives::Prediction prediction = objectives::parse_prediction(config.diffusion.prediction);
  data::ShardedSampler sampler(dataset.size(), config.data.global_batch, world, rank, config.seed);

  // The settings a resume must not silently change.
  std::ostringstream shape;
  shape << torch::IntArrayRef(net_cfg.data_shape);
  const std::map<std::string, std::string> settings = {
      {"method", "ddpm"},
      {"model_arch", net_cfg.arch},
      {"model_hidden", std::to_string(net_cfg.hidden)},
      {"model_layers", std::to_string(net_cfg.layers)},
      {"model_time_dim", std::to_string(net_cfg.time_dim)},
      {"data_shape", shape.str()},
      {"data_batch", std::to_string(config.data.global_batch)},
      {"prediction", config.diffusion.prediction},
      {"diffusion_schedule", config.diffusion.schedule},
      {"diffusion_steps", std::to_string(config.diffusion.timesteps)},
      {"rf_time", flow ? config.diffusion.rf_time : std::string("-")},
      {"num_classes", std::to_string(net_cfg.num_classes)},
      {"seed", std::to_string(config.seed)},
  };
  const std::optional<dist::CheckpointReader> ckpt = open_resume(config, settings);
  const bool resuming = ckpt.has_value();
  if (ckpt) {
    UD_CHECK_INPUT(ckpt->step() < config.steps, "--run_dir '", config.run_dir,
                   "' already holds a finished run (model.h5) at step ", ckpt->step(),
                   " (--train_steps=", config.steps,
                   "); raise --train_steps to go on, choose another --run_dir, or pass --overwrite");
  }
  if (rank == 0) {
    prepare_run_dir(config, resuming ? "" : "model.h5", /*fresh=*/!resuming);
    if (config.overwrite) unidiff::fs::remove_tree(dist::checkpoints_dir(config.run_dir));
  }
  comm->barrier();

  int64_t num_params = 0;
  for (const auto& p : model->parameters()) num_params += p.numel();
  log::info("train", detail::str_cat(flow ? "rectified flow (rf-velocity, " + config.diffusion.rf_time + " t"
                                          : "DDPM (" + config.diffusion.prediction + "-prediction, " +
                                                config.diffusion.schedule + ", T=" +
                                                std::to_string(config.diffusion.timesteps),
                                     ") on ", dataset.size(), " samples of shape ",
                                     torch::IntArrayRef(net_cfg.data_shape), "; ", net_cfg.arch,
                                     " with ", num_params, " parameters"));
  log::info("train", detail::str_cat(world, " rank(s) on ", device.str(), ", ", threads,
                                     " thread(s) each; global batch ", config.data.global_batch,
                                     " (", sampler.local_batch(), " per rank); ", config.steps,
                                     " steps"));

  // Rank 0's initial weights are the truth for every rank (the group broadcasts them).
  model->to(device);
  ModelGroup group("model", ModelGroup::Role::kTrained, model, *comm, config.optim, config.dist,
                   config.steps);
  int64_t first_step = 0;
  if (ckpt) {
    load_group(*ckpt, group);
    first_step = ckpt->step();
    const int64_t position = ckpt->attr_int("loader_position").value_or(0);
    // A changed global batch (allowed above) resumes at the last whole batch of samples consumed.
    sampler.set_position(position / config.data.global_batch * config.data.global_batch);
    log::info("train", detail::str_cat("resumed from ", ckpt->dir().string(), " (step ", first_step,
                                       ", written by ", ckpt->world_size(), " rank(s))"));
  }
  const auto save = [&](int64_t step, int64_t loader_position) {
    dist::CheckpointWriter w(*comm, config.run_dir, step);
    save_settings(w, settings);
    w.set_attr("method", std::string("ddpm"));
    w.set_attr("unidiff_version", std::string(kUnidiffVersion));
    w.set_attr("loader_position", loader_position);
    w.set_attr("global_batch", config.data.global_batch);
    save_group(w, group);
    const fs::path dir = w.commit(config.ckpt.keep);
    if (rank == 0) log::info("train", "checkpoint " + dir.string());
  };
  data::LoaderOptions loader_options;
  loader_options.device = device;
  loader_options.seed = config.seed;
  data::Loader loader(dataset, sampler, loader_options);

  std::ofstream metrics;
  if (rank == 0) metrics.open(fs::path(config.run_dir) / "metrics.jsonl", std::ios::app);

  const uint32_t seed = config.seed;
  torch::Tensor loss_sum = torch::zeros({}, torch::TensorOptions().device(device));
  int64_t window = 0;
  TrainResult result;
  result.start_step = first_step;
  const auto start = std::chrono::steady_clock::now();
  auto window_start = start;
  CheckpointPolicy policy(config.ckpt, *comm);
  // The tables on the device, so the step's gathers never go through the host.
  const objectives::DdpmSchedule tables = schedule.to(device);
  for (int64_t step = first_step; step < config.steps; ++step) {
    const data::Batch batch = loader.next();
    const auto s = static_cast<uint64_t>(step);
    // Drawn on the device (CUDA kernels there), equal bit for bit to the CPU's numbers.
    const torch::Tensor eps =
        rng::normal({seed, rng::Purpose::kNoise}, s, batch.index, net_cfg.data_shape, device);
    const torch::Tensor& x0 = batch.x;
    // (x_t, the network's time input, the target) of the objective.
    torch::Tensor x_t, t_in, target;
    if (flow) {
      const torch::Tensor tf =
          (config.diffusion.rf_time == "logit-normal"
               ? torch::sigmoid(rng::normal({seed, rng::Purpose::kTimestep}, s, batch.index, {1}, device))
               : rng::uniform({seed, rng::Purpose::kTimestep}, s, batch.index, {1}, device))
              .view({-1});
      std::vector<int64_t> bshape(static_cast<size_t>(x0.dim()), 1);
      bshape[0] = x0.size(0);
      const torch::Tensor tb = tf.view(bshape);
      x_t = (1 - tb) * x0 + tb * eps;
      t_in = tf * 1000.0;
      target = eps - x0;
    } else {
      const torch::Tensor t = rng::randint({seed, rng::Purpose::kTimestep}, s, batch.index,
                                           schedule.num_steps, device);
      x_t = objectives::q_sample(tables, x0, t, eps);
      t_in = t.to(torch::kFloat32);
      // L_simple in the network's own parameterisation: target eps, x0 or v = alpha eps - sigma x0
      // (FORMULAS.md sections 2-3).
      if (prediction == objectives::Prediction::kEps) {
        target = eps;
      } else {
        const torch::Tensor abar = tables.alpha_bar_at(t, x0);
        target = objectives::vp_target(prediction, {x0, eps}, abar.sqrt(), (1 - abar).sqrt());
      }
    }
    // Class labels, each replaced by "no class" (K) with probability cfg_drop (keyed per sample):
    // the one network learns the conditional and the unconditional model for guidance.
    torch::Tensor labels;
    if (net_cfg.num_classes > 0) {
      const torch::Tensor drop =
          rng::uniform({seed, rng::Purpose::kLabelDrop}, s, batch.index, {1}, device).view({-1}) <
          config.diffusion.cfg_drop;
      labels = torch::where(drop, torch::full_like(batch.labels.to(device), net_cfg.num_classes),
                            batch.labels.to(device));
    }
    group.begin_step();
    const objectives::LossOutput out =
        objectives::eps_mse_loss(model->forward_cond(x_t, t_in, labels), target);
    out.loss.backward();
    const double lr = group.end_step(step);
    loss_sum += out.loss.detach();
    ++window;

    const bool last = step + 1 == config.steps;
    if ((step + 1) % config.log_every == 0 || last) {
      // The only host synchronisation of the loop: one all-reduce of the window's loss.
      torch::Tensor mean = (loss_sum / static_cast<double>(window)).to(torch::kCPU, torch::kFloat64)
                               .reshape({1});
      comm->all_reduce(mean);
      const double loss = mean.item<double>() / world;
      const auto now = std::chrono::steady_clock::now();
      const double elapsed = std::chrono::duration<double>(now - start).count();
      const double rate =
          static_cast<double>(window) / std::chrono::duration<double>(now - window_start).count();
      UD_CHECK_INPUT(std::isfinite(loss), "training diverged: the loss is ", loss, " at step ",
                     step + 1, " (try a lower --optim_lr)");
      if (rank == 0) {
        char line[256];
        std::snprintf(line, sizeof(line), "step %ld/%ld  loss %.5f  lr %.2e  %.0f steps/s  eta %s",
                      step + 1, config.steps, loss, lr, rate,
                      format_duration(static_cast<double>(config.steps - step - 1) / rate).c_str());
        log::info("train", line);
        metrics << JsonLine()
                       .add("step", step + 1)
                       .add("loss", loss)
                       .add("lr", lr)
                       .add("steps_per_s", rate)
                       .add("samples_per_s", rate * static_cast<double>(config.data.global_batch))
                       .add("elapsed_s", elapsed)
                       .str()
                << "\n";
        metrics.flush();
      }
      result.final_loss = loss;
      loss_sum.zero_();
      window = 0;
      window_start = now;
    }
    const CheckpointPolicy::Decision d = policy.after_step(step + 1, last);
    if (d.save) save(step + 1, loader.position());
    if (d.stop) {
      result.stopped = true;
      result.steps = step + 1;
      log_stop(step + 1, d.signal);
      return result;
    }
  }
  result.steps = config.steps;
  result.replica_divergence = dist::max_divergence(model->parameters(), *comm);
  if (result.replica_divergence != 0) {
    log::warn("train", detail::str_cat("replicas diverged by ", result.replica_divergence));
  }
  if (rank == 0) {
    const fs::path out = fs::path(config.run_dir) / "model.h5";
    save_model(out, net_cfg, config.diffusion, *model, group.ema(), config.steps);
    const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    log::info("train", detail::str_cat("done in ", format_duration(total), "; weights and EMA in ",
                                       out.string()));
  }
  comm->barrier();
  return result;
}

}  // namespace unidiff::experiments
