#include "experiments/train_diffusion.h"

#include <ATen/Context.h>

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
#include "core/h5.h"
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
#include "experiments/classifier.h"
#include "experiments/graph_step.h"
#include "experiments/metrics.h"
#include "experiments/sample.h"
#include "experiments/model_group.h"
#include "experiments/model_io.h"
#include "experiments/objective.h"
#include "experiments/run_util.h"
#include "models/ema.h"
#include "models/group_norm_act.h"
#include "models/keyed_dropout.h"
#include "models/precision.h"
#include "models/unet.h"
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
  validate_optim(c.optim);
  models::validate_precision(c.precision);
}

/// Reflow pairs are a samples file of a rectified flow (`unidiff sample`): its `sampling_seed`
/// attribute keys the noise end of every pair.
uint32_t reflow_noise_seed(const std::string& data_path) {
  UD_CHECK_INPUT(std::filesystem::is_regular_file(data_path), "--reflow needs one samples file from ",
                 "'unidiff sample' as --data, got '", data_path, "'");
  const h5::File f = h5::File::open_read(data_path);
  const auto seed = h5::read_attr_string(f, "/", "sampling_seed");
  const auto model = h5::read_attr_string(f, "/", "sampling_objective");
  UD_CHECK_INPUT(seed.has_value() && model.has_value(), "'", data_path,
                 "' is not a samples file written by 'unidiff sample' (no sampling_seed / ",
                 "sampling_objective attributes): --reflow cannot regenerate its noise");
  UD_CHECK_INPUT(*model == "rf", "'", data_path, "' holds samples of a ", *model,
                 " model; reflow pairs come from a rectified flow (objective rf)");
  return static_cast<uint32_t>(std::stoul(*seed));
}

/// --init_from: copies a trained model's (EMA) weights into `model`; the architectures must match.
void init_weights(const std::string& from, const models::NetworkConfig& net_cfg, models::Network& model) {
  const LoadedModel init = load_model(from, /*use_ema=*/true);
  UD_CHECK_INPUT(init.network.arch == net_cfg.arch && init.network.data_shape == net_cfg.data_shape &&
                     init.network.num_classes == net_cfg.num_classes,
                 "--init_from '", from, "' is a ", init.network.arch, " on samples of shape ",
                 torch::IntArrayRef(init.network.data_shape), "; this run builds a ", net_cfg.arch,
                 " on ", torch::IntArrayRef(net_cfg.data_shape));
  torch::NoGradGuard no_grad;
  const auto src = init.module->named_parameters();
  for (auto& p : model.named_parameters()) {
    const torch::Tensor* s = src.find(p.key());
    UD_CHECK_INPUT(s != nullptr && s->sizes() == p.value().sizes(), "--init_from '", from,
                   "': parameter ", p.key(), " is missing or shaped differently (other model settings?)");
    p.value().copy_(*s);
  }
}

/// Evaluation during training (--eval_every): rank 0 samples the EMA weights with the objective's
/// default sampler and a fixed sampling key (so numbers compare across runs and steps) and
/// measures the sliced Wasserstein distance to the reference (vectors) or the classifier's FD and
/// class accuracy (images).
class TrainingEval {
 public:
  TrainingEval(const TrainConfig& c, const models::NetworkConfig& net, const DiffusionConfig& diffusion,
               const data::TensorDataset& train_data)
      : net_(net), diffusion_(diffusion), num_(c.distill.eval_samples) {
    const data::TensorDataset ref =
        c.eval_reference.empty() ? train_data : data::TensorDataset::load(c.eval_reference);
    UD_CHECK_INPUT(ref.sample_shape() == net.data_shape, "--eval_reference holds samples of shape ",
                   torch::IntArrayRef(ref.sample_shape()), "; the model makes ", torch::IntArrayRef(net.data_shape));
    UD_CHECK_INPUT(num_ >= 2, "--eval_every needs --eval_samples >= 2, got ", num_);
    images_ = net.data_shape.size() == 3;
    if (images_) {
      UD_CHECK_INPUT(!c.eval_classifier.empty(), "--eval_every on images needs --eval_classifier (make one with ",
                     "'unidiff eval train-classifier')");
      classifier_ = load_classifier(c.eval_classifier);
      reference_features_ = classify(classifier_.net, ref.all()).first;
    } else {
      reference_ = ref.all().slice(0, 0, 20000);
    }
  }

  /// One JSON row for metrics.jsonl (also logged).
  std::string run(int64_t step, const models::Ema& ema, torch::Device device) {
    const auto start = std::chrono::steady_clock::now();
    LoadedModel m{net_, diffusion_, models::make_network(net_), step};
    ema.copy_to(*m.module);
    SampleConfig sc;
    sc.num = num_;
    sc.batch = images_ ? 500 : 4096;
    sc.seed = 0;
    torch::Tensor samples;
    {
      torch::NoGradGuard no_grad;
      samples = draw_samples(sc, m, device);
    }
    JsonLine row;
    row.add("step", step).add("eval_samples", num_);
    std::string what;
    if (images_) {
      const auto [features, predicted] = classify(classifier_.net, samples);
      const double fd = frechet_distance(features, reference_features_);
      row.add("eval_fd", fd);
      what = detail::str_cat("FD ", fd);
      if (net_.num_classes > 0) {
        const torch::Tensor want = torch::arange(num_, torch::kInt64).remainder(net_.num_classes);
        const double acc = (predicted == want).to(torch::kFloat64).mean().item<double>();
        row.add("eval_class_accuracy", acc);
        what += detail::str_cat(", class accuracy ", acc);
      }
    } else {
      const double sw = sliced_wasserstein(samples, reference_, 256, 0);
      row.add("eval_sliced_wasserstein", sw);
      what = detail::str_cat("sliced Wasserstein ", sw);
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    row.add("eval_seconds", secs);
    log::info("eval", detail::str_cat("step ", step, ": ", what, " (", num_, " EMA samples, ", format_duration(secs), ")"));
    return row.str();
  }

 private:
  models::NetworkConfig net_;
  DiffusionConfig diffusion_;
  int64_t num_;
  bool images_ = false;
  torch::Tensor reference_, reference_features_;
  LoadedClassifier classifier_;
};

}  // namespace

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

TrainResult train_diffusion(const TrainConfig& config) {
  validate(config);
  const torch::Device device = dist::select_device();
  // NCCL for a CUDA device (when built with it), MPI otherwise.
  auto comm = dist::make_communicator(device);
  const int world = comm->size(), rank = comm->rank();
  const int threads = dist::configure_threads(config.threads);

  // Everything that can fail on bad input happens before the run directory is touched.
  if (config.cuda_graph) GraphedPretrainStep::check_supported(device, *comm);
  if (config.fused_group_norm) models::check_fused_group_norm(device);
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
  DiffusionConfig diffusion = resolve_diffusion(config.diffusion);
  if (diffusion.reflow) diffusion.reflow_seed = reflow_noise_seed(config.data.path);
  torch::manual_seed(config.seed);  // same initial weights on every rank (then broadcast anyway)
  auto model = models::make_network(net_cfg);
  if (!config.init_from.empty()) init_weights(config.init_from, net_cfg, *model);
  if (config.fused_group_norm && !models::set_fused_group_norm(*model, true)) {
    log::warn("train", "--fused_group_norm has no effect on a " + net_cfg.arch + " (it has no group norms)");
  }
  const std::unique_ptr<PretrainObjective> objective = make_pretrain_objective(
      diffusion, {config.seed, config.steps, net_cfg.data_shape, device});
  std::optional<TrainingEval> evaluator;
  if (config.eval_every > 0 && rank == 0) evaluator.emplace(config, net_cfg, diffusion, dataset);
  data::ShardedSampler sampler(dataset.size(), config.data.global_batch, world, rank, config.seed);

  // The settings a resume must not silently change.
  std::ostringstream shape;
  shape << torch::IntArrayRef(net_cfg.data_shape);
  std::map<std::string, std::string> settings = {
      {"method", "ddpm"},
      {"objective", diffusion.objective},
      {"model_arch", net_cfg.arch},
      {"model_hidden", std::to_string(net_cfg.hidden)},
      {"model_layers", std::to_string(net_cfg.layers)},
      {"model_time_dim", std::to_string(net_cfg.time_dim)},
      {"model_fourier", std::to_string(net_cfg.fourier)},
      {"model_depth_heads_patch", std::to_string(net_cfg.depth) + "/" + std::to_string(net_cfg.heads) + "/" +
                                      std::to_string(net_cfg.patch)},
      {"data_shape", shape.str()},
      {"data_batch", std::to_string(config.data.global_batch)},
      {"num_classes", std::to_string(net_cfg.num_classes)},
      {"seed", std::to_string(config.seed)},
  };
  settings.merge(objective->settings());
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
  log::info("train", detail::str_cat(objective->describe(), " on ", dataset.size(),
                                     " samples of shape ", torch::IntArrayRef(net_cfg.data_shape), "; ",
                                     net_cfg.arch, " with ", num_params, " parameters"));
  log::info("train", detail::str_cat(world, " rank(s) on ", device.str(), ", ", threads,
                                     " thread(s) each; global batch ", config.data.global_batch,
                                     " (", sampler.local_batch(), " per rank); ", config.steps,
                                     " steps; ", config.precision,
                                     config.channels_last ? ", channels-last" : "",
                                     config.cudnn_benchmark && device.is_cuda() ? ", cuDNN autotuning" : "",
                                     config.cuda_graph ? ", the step in a CUDA graph" : "",
                                     config.fused_group_norm ? ", fused group norms" : ""));
  if (config.cudnn_benchmark && !device.is_cuda()) {
    log::warn("train", "--cudnn_benchmark has no effect on " + device.str());
  }
  at::globalContext().setBenchmarkCuDNN(config.cudnn_benchmark && device.is_cuda());

  // Rank 0's initial weights are the truth for every rank (the group broadcasts them).
  model->to(device);
  // Before the group: its reducer keeps each parameter's layout in the flat buckets.
  const bool channels_last = config.channels_last && net_cfg.data_shape.size() == 3;
  models::set_channels_last(*model, channels_last);
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
  std::optional<GraphedPretrainStep> graphed;
  if (config.cuda_graph) graphed.emplace(group, *objective, seed, config.precision, channels_last);
  torch::Tensor loss_sum = torch::zeros({}, torch::TensorOptions().device(device));
  int64_t window = 0;
  TrainResult result;
  result.start_step = first_step;
  const auto start = std::chrono::steady_clock::now();
  auto window_start = start;
  CheckpointPolicy policy(config.ckpt, *comm);
  for (int64_t step = first_step; step < config.steps; ++step) {
    const data::Batch batch = loader.next();
    const auto s = static_cast<uint64_t>(step);
    // The sample indices key every draw of the step: on the device once (pinned: no host wait).
    const torch::Tensor index = batch.index.to(device, /*non_blocking=*/true);
    // Class labels, each replaced by "no class" (K) with probability cfg_drop (keyed per sample):
    // the one network learns the conditional and the unconditional model for guidance.
    torch::Tensor labels;
    if (net_cfg.num_classes > 0) {
      const torch::Tensor drop =
          rng::uniform({seed, rng::Purpose::kLabelDrop}, s, index, {1}, device).view({-1}) <
          config.diffusion.cfg_drop;
      const torch::Tensor given = batch.labels.to(device, /*non_blocking=*/true);
      labels = torch::where(drop, torch::full_like(given, net_cfg.num_classes), given);
    }
    const StepData data{batch.x, index, labels, step};
    const StepOutcome out = graphed ? graphed->run(data)
                                    : pretrain_step(group, *objective, data, seed, config.precision, channels_last);
    const double lr = out.lr;
    loss_sum += out.loss;
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
        std::snprintf(line, sizeof(line), "step %ld/%ld  loss %.5f  lr %.2e  %s  eta %s",
                      step + 1, config.steps, loss, lr, format_rate(rate).c_str(),
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
    if (config.eval_every > 0 && ((step + 1) % config.eval_every == 0 || last)) {
      if (rank == 0) {
        metrics << evaluator->run(step + 1, group.ema(), device) << "\n";
        metrics.flush();
      }
      comm->barrier();
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
    save_model(out, net_cfg, diffusion, *model, group.ema(), config.steps);
    const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    log::info("train", detail::str_cat("done in ", format_duration(total), "; weights and EMA in ",
                                       out.string()));
  }
  comm->barrier();
  return result;
}

}  // namespace unidiff::experiments
