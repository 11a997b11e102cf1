// experiments/run/run.h.
#include "experiments/run/run.h"

#include <ATen/Context.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <optional>
#include <stdexcept>

#include "core/error.h"
#include "core/fs.h"
#include "core/json.h"
#include "core/log.h"
#include "core/version.h"
#include "dist/checkpoint.h"
#include "dist/gradients.h"
#include "dist/world.h"
#include "dist/watchdog.h"
#include "experiments/run/metrics_log.h"
#include "experiments/run/plots.h"
#include "experiments/model_io.h"
#include "experiments/run/checkpointing.h"
#include "experiments/run/evaluation.h"
#include "experiments/run/progress.h"
#include "experiments/run/run_dir.h"

namespace unidiff::experiments {
namespace {

namespace sfs = std::filesystem;

/// "[12, 40, 7]" of at most 64 indices, then how many more.
std::string index_list(const torch::Tensor& idx) {
  const torch::Tensor i = idx.to(torch::kCPU, torch::kInt64).reshape({-1});
  std::string s = "[";
  const int64_t n = i.numel(), shown = std::min<int64_t>(n, 64);
  for (int64_t k = 0; k < shown; ++k) s += (k ? ", " : "") + std::to_string(i[k].item<int64_t>());
  s += n > shown ? ", ... (" + std::to_string(n) + " in all)]" : "]";
  return s;
}

/// The loss (and stats) of the window went non-finite: find the first step that did, on every
/// rank, and name it with its batch's global sample indices. Collective; throws (exit 1).
/// " (first at step S); its batch of stream 'data' held the global sample indices [...] (keyed by
/// --seed at that step)": the run's first non-finite step over the ranks, or "" when there was
/// none. Collective (every rank calls it).
std::string describe_first_bad(Run& run, const torch::Tensor& first_bad) {
  dist::Communicator& comm = run.comm();
  torch::Tensor s = first_bad.to(torch::kCPU, torch::kInt64).reshape({1});
  const int64_t none = std::numeric_limits<int64_t>::max();
  if (s[0].item<int64_t>() < 0) s.fill_(none);
  comm.all_reduce(s, dist::ReduceOp::kMin);
  const int64_t step = s[0].item<int64_t>();
  if (step == none) return "";
  std::string text = detail::str_cat(" (first at step ", step + 1, ")");
  if (DataStream* stream = run.main_stream()) {
    if (const auto mine = stream->indices_of(step)) {
      const torch::Tensor all = comm.all_gather(mine->to(torch::kInt64).contiguous());
      text += detail::str_cat("; its batch of stream '", stream->name(), "' held the global sample indices ",
                              index_list(all), " (keyed by --seed=", run.seed(), " at that step)");
    }
  }
  return text;
}

[[noreturn]] void report_divergence(Run& run, const torch::Tensor& first_bad, int64_t window_first, int64_t last,
                                    const std::string& what) {
  std::string where = describe_first_bad(run, first_bad);
  if (where.empty()) where = detail::str_cat(" (in steps ", window_first + 1, "-", last + 1, ")");
  throw std::runtime_error(detail::str_cat("training diverged: ", what, where,
                                           "; every checkpoint holds finite weights; try a lower --optim_lr"));
}

/// Whether every group's weights are finite on every rank: checked before each checkpoint and the
/// final model file, so that no non-finite weight is ever committed (skipped steps leave the
/// weights as they were; this holds against anything else). One all-reduce. Returns "" or which
/// group is not finite.
std::string nonfinite_weights(Run& run) {
  std::vector<ModelGroup*> groups = run.groups().all();
  std::vector<torch::Tensor> flags;
  for (ModelGroup* g : groups) {
    torch::Tensor bad = torch::zeros({1}, torch::TensorOptions().dtype(torch::kFloat64).device(run.device()));
    for (const auto& p : g->module().parameters()) bad = bad + p.isfinite().logical_not().any().to(torch::kFloat64);
    flags.push_back(bad);
  }
  if (flags.empty()) return "";
  torch::Tensor all = torch::cat(flags).to(torch::kCPU);
  run.comm().all_reduce(all, dist::ReduceOp::kMax);
  for (size_t i = 0; i < groups.size(); ++i) {
    if (all[static_cast<int64_t>(i)].item<double>() > 0) {
      return detail::str_cat("the weights of group '", groups[i]->name(), "' are not finite");
    }
  }
  return "";
}

}  // namespace

Run::Run(const RunConfig& config)
    : config_(config), device_(dist::select_device()), comm_(dist::make_communicator(device_)) {
  threads_ = dist::configure_threads(config.threads);
}

Run::~Run() = default;

DataStream& Run::open_stream(const std::string& name, const std::string& path, int64_t global_batch) {
  for (const auto& s : streams_) UD_ASSERT(s->name() != name, "data stream ", name, " opened twice");
  UD_ASSERT(streams_.size() < 256, "too many data streams");
  data::TensorDataset dataset =
      config_.data.stream ? data::TensorDataset::open_streaming(path) : data::TensorDataset::load(path);
  streams_.push_back(std::make_unique<DataStream>(name, static_cast<uint8_t>(streams_.size()), std::move(dataset),
                                                  global_batch, world(), rank(), config_.seed, device_));
  return *streams_.back();
}

DataStream& Run::stream(const std::string& name) {
  for (auto& s : streams_) {
    if (s->name() == name) return *s;
  }
  UD_ASSERT(false, "no data stream named ", name);
  return *streams_.front();
}

DataStream* Run::main_stream() { return streams_.empty() ? nullptr : streams_.front().get(); }

namespace {

/// The newest complete checkpoint in `run_dir` written after at most `steps` steps, if any.
std::optional<dist::CheckpointReader> checkpoint_at_most(const std::string& run_dir, int64_t steps) {
  for (const auto& dir : dist::step_dirs_newest_first(run_dir)) {
    const std::string n = dir.filename().string();  // step-000000020
    char* end = nullptr;
    const long long step = std::strtoll(n.c_str() + 5, &end, 10);
    if (*end != '\0' || step < 0 || step > steps) continue;
    try {
      return dist::CheckpointReader(dir);
    } catch (const InputError& e) {
      log::warn("replay", detail::str_cat("skipping ", dir.string(), ": ", e.what()));
    }
  }
  return std::nullopt;
}

/// Loads `ckpt` into the run's groups, its data streams' positions and the method's state; returns
/// the checkpoint's step (a resumed run and a replay both start there).
int64_t load_checkpoint(const dist::CheckpointReader& ckpt, Run& run,
                        std::vector<std::unique_ptr<DataStream>>& streams, Method& method) {
  load_groups(ckpt, run.groups());
  for (auto& s : streams) s->load(ckpt);
  method.load_state(ckpt);
  return ckpt.step();
}

/// --replay_step=S: the state before step S (the newest checkpoint written after at most S - 1
/// steps, else the run's start, both exact since every step is a pure function of the state, the
/// seed and the step), then step S, reported: its loss on every rank, each trained group's
/// gradient (finite, or skipped with the parameters whose gradient is not finite) and its batch's
/// global sample indices. Nothing is written to the run directory.
TrainResult replay(Run& run, std::vector<std::unique_ptr<DataStream>>& streams, Method& method,
                   const RunConfig& config, const Guard& guard, int64_t total) {
  const int64_t target = config.replay_step - 1;  // 0-based index of step S
  UD_CHECK_INPUT(config.replay_step <= total, "--replay_step=", config.replay_step, " is past the run's ", total,
                 " steps");
  const std::optional<dist::CheckpointReader> ckpt = checkpoint_at_most(config.run_dir, target);
  if (ckpt) {
    const auto changed = changed_settings(*ckpt, guard);
    std::string list;
    for (const auto& c : changed) list += "\n  " + c;
    UD_CHECK_INPUT(changed.empty(), "--replay_step needs the run's own settings; ", ckpt->dir().string(),
                   " was made with others:", list);
  }
  method.start(ckpt.has_value());
  const int64_t first = ckpt ? load_checkpoint(*ckpt, run, streams, method) : 0;
  log::info("replay", detail::str_cat("step ", config.replay_step, " from ",
                                      ckpt ? ckpt->dir().string() : std::string("the start"), " (", target - first,
                                      " step(s) before it)"));
  const auto skips = [&] {
    std::vector<double> n;
    for (ModelGroup* g : run.groups().all()) {
      n.push_back(g->trained() && g->skipped_total().defined() ? g->skipped_total().sum().item<double>() : 0.0);
    }
    return n;
  };
  for (int64_t step = first; step < target; ++step) {
    for (auto& s : streams) s->set_step(step);
    (void)method.step(step);
  }
  for (auto& s : streams) s->set_step(target);
  const std::vector<double> before = skips();
  const StepOutput out = method.step(target);
  const std::vector<double> after = skips();
  torch::Tensor losses = run.comm().all_gather(out.loss.detach().to(torch::kCPU, torch::kFloat64).reshape({1}));
  std::string report = detail::str_cat("step ", config.replay_step, ": loss");
  for (int64_t r = 0; r < losses.size(0); ++r) {
    char v[40];
    std::snprintf(v, sizeof(v), " %.17g", losses[r].item<double>());
    report += detail::str_cat(v, losses.size(0) > 1 ? detail::str_cat(" (rank ", r, ")") : "");
  }
  report += torch::isfinite(losses).all().item<bool>() ? " (finite)" : " (NOT finite)";
  const std::vector<ModelGroup*> groups = run.groups().all();
  for (size_t i = 0; i < groups.size(); ++i) {
    ModelGroup* g = groups[i];
    if (!g->trained()) continue;
    if (after[i] == before[i]) {
      report += detail::str_cat("; group '", g->name(), "': gradient finite, updated");
      continue;
    }
    std::string names;
    int shown = 0, bad = 0;
    for (const auto& item : g->module().named_parameters()) {
      const torch::Tensor grad = item.value().grad();
      if (!grad.defined() || torch::isfinite(grad).all().item<bool>()) continue;
      ++bad;
      if (shown++ < 8) names += detail::str_cat(names.empty() ? "" : ", ", item.key());
    }
    report += detail::str_cat("; group '", g->name(), "': gradient NOT finite, update skipped",
                              bad > 0 ? detail::str_cat(" (non-finite in ", bad, " parameter(s): ", names,
                                                        bad > shown ? ", ..." : "", ")")
                                      : std::string());
  }
  log::info("replay", report);
  if (DataStream* stream = run.main_stream()) {
    if (const auto mine = stream->indices_of(target)) {
      const torch::Tensor all = run.comm().all_gather(mine->to(torch::kInt64).contiguous());
      log::info("replay", detail::str_cat("step ", config.replay_step, ": its batch of stream '", stream->name(),
                                          "' held the global sample indices ", index_list(all), " (keyed by --seed=",
                                          run.seed(), " at that step)"));
    }
  }
  TrainResult result;
  result.start_step = first;
  result.steps = config.replay_step;
  result.final_loss = losses.mean().item<double>();
  return result;
}

}  // namespace

TrainResult train(const RunConfig& given, const settings::Assignments& assignments) {
  RunConfig config = given;
  const MethodInfo& info = find_method(config.method);
  config.method = info.name;  // the canonical name (an alias such as ddpm resolved)
  validate(config);
  dist::set_collective_timeout(config.dist.timeout);  // before Run makes the communicators
  Run run(config);
  const int world = run.world(), rank = run.rank();
  const torch::Device device = run.device();

  // Everything that can fail on bad input happens before the run directory is touched.
  std::unique_ptr<Method> method = info.make(assignments);
  method->setup(run);
  for (auto& s : run.streams_) s->check();
  const int64_t total = method->total_steps();
  std::optional<TrainingEval> evaluator;
  if (config.eval_every > 0 && rank == 0) {
    UD_CHECK_INPUT(run.main_stream() != nullptr, "--eval_every needs a method that reads --data");
    evaluator.emplace(config, method->result().network.data_shape, run.main_stream()->dataset());
  }
  Guard guard = run_settings().guarded(config);
  for (const auto& [k, v] : method->guard()) guard[k] = v;
  if (config.replay_step > 0) return replay(run, run.streams_, *method, config, guard, total);
  // The run directory: unidiff's or new, and this job's alone (rank 0 holds its lock; every rank
  // learns of a refusal and exits 2 with it).
  check_run_dir_owned(config.run_dir);
  RunDirLock lock;
  const auto lock_run_dir = [&] {
    std::string holder;
    if (rank == 0 && !lock.held() && std::filesystem::is_directory(config.run_dir)) holder = lock.acquire(config.run_dir);
    torch::Tensor refused = torch::tensor({holder.empty() ? 0.0 : 1.0}, torch::kFloat64);
    run.comm().all_reduce(refused, dist::ReduceOp::kMax);
    UD_CHECK_INPUT(refused[0].item<double>() == 0, "--run_dir '", config.run_dir, "' is in use by another job (",
                   rank == 0 ? holder : std::string("its lock is held; rank 0 names the holder"),
                   "); wait for it to end or choose another --run_dir");
  };
  lock_run_dir();
  const std::optional<dist::CheckpointReader> ckpt = open_resume(config.run_dir, config.ckpt, config.overwrite, guard);
  const bool resuming = ckpt.has_value();
  if (ckpt) {
    UD_CHECK_INPUT(ckpt->step() < total, "--run_dir '", config.run_dir,
                   "' already holds a finished run (model.h5) at step ", ckpt->step(), " (this run has ", total,
                   " steps); raise --train_steps to go on, choose another --run_dir, or pass --overwrite");
  }
  if (rank == 0) {
    prepare_run_dir(config.run_dir, config.resolved_flags, config.overwrite, resuming ? "" : "model.h5",
                    /*fresh=*/!resuming);
    mark_run_dir(config.run_dir);
    if (config.overwrite) remove_checkpoints(config.run_dir);
  }
  lock_run_dir();  // a directory this job has just made
  method->start(resuming);
  run.comm().barrier();

  log::info("train", method->describe());
  {
    // What each group holds on this rank (weights, gradients, optimizer moments, EMA).
    std::string line = "groups:";
    for (const ModelGroup* g : run.groups().all()) {
      const ModelGroup::Bytes b = g->bytes();
      char part[200];
      std::snprintf(part, sizeof(part), " %s (%s%s) %.2f MB [weights %.2f, grads %.2f, optimizer %.2f, EMA %.2f];",
                    g->name().c_str(), g->trained() ? "trained" : "frozen",
                    g->storage() == torch::kBFloat16 ? ", bf16" : "", b.total() / 1e6, b.params / 1e6, b.grads / 1e6,
                    b.optimizer / 1e6, b.ema / 1e6);
      line += part;
    }
    log::info("train", line);
  }
  if (DataStream* main = run.main_stream()) {
    log::info("train", detail::str_cat(world, " rank(s) on ", device.str(), ", ", run.threads(),
                                       " thread(s) each; global batch ", main->global_batch(), " (",
                                       main->local_batch(), " per rank); ", total, " steps; ", config.precision,
                                       config.channels_last ? ", channels-last" : "",
                                       config.cudnn_benchmark && device.is_cuda() ? ", cuDNN autotuning" : "",
                                       config.cuda_graph ? ", the step in a CUDA graph" : "",
                                       config.fused_group_norm ? ", fused group norms" : ""));
  }
  if (config.cudnn_benchmark && !device.is_cuda()) {
    log::warn("train", "--cudnn_benchmark has no effect on " + device.str());
  }
  at::globalContext().setBenchmarkCuDNN(config.cudnn_benchmark && device.is_cuda());

  int64_t first_step = 0;
  if (ckpt) {
    first_step = load_checkpoint(*ckpt, run, run.streams_, *method);
    log::info("train", detail::str_cat("resumed from ", ckpt->dir().string(), " (step ", first_step,
                                       ", written by ", ckpt->world_size(), " rank(s))"));
  }
  const auto save = [&](int64_t step) {
    const auto began = std::chrono::steady_clock::now();
    dist::CheckpointWriter w(run.comm(), config.run_dir, step);
    save_settings(w, guard);
    w.set_attr("method", config.method);
    w.set_attr("unidiff_version", std::string(kUnidiffVersion));
    for (const auto& s : run.streams_) s->save(w);
    save_groups(w, run.groups());
    method->save_state(w);
    const sfs::path dir = w.commit(config.ckpt.keep);
    if (rank == 0) {
      // Size (every rank's shards) and write rate: a checkpoint of a large model takes seconds.
      uintmax_t bytes = 0;
      std::error_code ec;
      for (const auto& e : sfs::directory_iterator(dir, ec)) {
        if (e.is_regular_file(ec)) bytes += e.file_size(ec);
      }
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
      const double mib = static_cast<double>(bytes) / (1 << 20);
      char what[96];
      std::snprintf(what, sizeof(what), ": %.1f MiB in %.2f s (%.0f MiB/s)", mib, secs, mib / std::max(secs, 1e-6));
      log::info("train", "checkpoint " + dir.string() + what);
    }
  };

  std::optional<MetricsLog> metrics;  // metrics.jsonl and the TensorBoard events, rank 0
  if (rank == 0) metrics.emplace(config.run_dir, config.tensorboard, first_step);
  const auto zero = [&] { return torch::zeros({}, torch::TensorOptions().device(device)); };
  torch::Tensor loss_sum = zero();
  std::map<std::string, torch::Tensor> stat_sums;
  torch::Tensor first_bad = torch::full({}, -1, torch::TensorOptions().dtype(torch::kInt64).device(device));
  // Non-finite steps (a non-finite loss, or a trained group's skipped update: ModelGroup::update
  // leaves weights, moments and EMA alone when the gradient is not finite) are counted on the
  // device and read at the log: up to --max_nonfinite_steps are skipped and reported, one more
  // stops the run with exit 1. The window's means are over its finite steps.
  torch::Tensor finite_steps = zero(), bad_steps = zero();
  int64_t nonfinite_total = 0;
  bool first_bad_reported = false;
  const auto skips = [&] {
    torch::Tensor n = zero();
    for (ModelGroup* g : run.groups().all()) {
      if (g->trained() && g->skipped_total().defined()) n = n + g->skipped_total().sum();
    }
    return n;
  };
  int64_t window = 0, window_first = first_step;
  TrainResult result;
  result.start_step = first_step;
  const auto start = std::chrono::steady_clock::now();
  auto window_start = start;
  CheckpointPolicy policy(config.ckpt, run.comm());
  const int64_t samples_per_step = run.main_stream() ? run.main_stream()->global_batch() : 0;
  for (int64_t step = first_step; step < total; ++step) {
    for (auto& s : run.streams_) s->set_step(step);
    const torch::Tensor skips_before = skips();
    const StepOutput out = method->step(step);
    const torch::Tensor finite = out.loss.isfinite();
    const torch::Tensor bad = finite.logical_not().logical_or(skips() > skips_before);
    loss_sum += torch::where(finite, out.loss, torch::zeros_like(out.loss));
    finite_steps += finite;
    bad_steps += bad;
    for (const auto& [k, v] : out.stats) {
      auto it = stat_sums.find(k);
      if (it == stat_sums.end()) it = stat_sums.emplace(k, zero()).first;
      it->second += torch::where(finite.logical_and(v.isfinite()), v, torch::zeros_like(v));
    }
    // The run's first non-finite step, kept on the device (no host wait).
    first_bad = torch::where((first_bad < 0).logical_and(bad), torch::full_like(first_bad, step), first_bad);
    ++window;

    const bool last = step + 1 == total;
    if ((step + 1) % config.log_every == 0 || last || out.boundary) {
      // The only host synchronisation of the loop: the window's sums over the ranks, and its
      // count of non-finite steps (the largest any rank saw).
      std::vector<torch::Tensor> parts{loss_sum, finite_steps};
      for (const auto& [k, v] : stat_sums) parts.push_back(v);
      torch::Tensor sums = torch::stack(parts).to(torch::kCPU, torch::kFloat64);
      run.comm().all_reduce(sums);
      torch::Tensor bad_window = bad_steps.reshape({1}).to(torch::kCPU, torch::kFloat64);
      run.comm().all_reduce(bad_window, dist::ReduceOp::kMax);
      const double counted = sums[1].item<double>();
      torch::Tensor means = sums / (counted > 0 ? counted : std::numeric_limits<double>::quiet_NaN());
      const double loss = means[0].item<double>();
      const auto bad_now = static_cast<int64_t>(bad_window[0].item<double>());
      nonfinite_total += bad_now;
      if (nonfinite_total > config.max_nonfinite_steps) {
        report_divergence(run, first_bad, window_first, step,
                          detail::str_cat(nonfinite_total, " non-finite step(s), more than --max_nonfinite_steps=",
                                          config.max_nonfinite_steps, " (the window's mean loss ", loss, ")"));
      }
      if (bad_now > 0) {
        const std::string where = first_bad_reported ? std::string() : describe_first_bad(run, first_bad);
        first_bad_reported = true;
        if (rank == 0) {
          log::warn("train", detail::str_cat("skipped ", bad_now, " non-finite step(s) in steps ", window_first + 1,
                                             "-", step + 1, " (", nonfinite_total, " of at most ",
                                             config.max_nonfinite_steps, ")", where,
                                             "; weights, moments and EMA are those before them"));
        }
      }
      const auto now = std::chrono::steady_clock::now();
      const double elapsed = std::chrono::duration<double>(now - start).count();
      const double rate = static_cast<double>(window) / std::chrono::duration<double>(now - window_start).count();
      if (rank == 0) {
        char line[256];
        std::snprintf(line, sizeof(line), "step %ld/%ld  loss %.5f  lr %.2e  %s  eta %s", step + 1, total, loss,
                      out.lr, format_rate(rate).c_str(),
                      format_duration(static_cast<double>(total - step - 1) / rate).c_str());
        std::string text = line;
        int64_t k = 2;
        for (const auto& [name, v] : stat_sums) {
          char part[64];
          std::snprintf(part, sizeof(part), "  %s %.5f", name.c_str(), means[k++].item<double>());
          text += part;
        }
        const std::string extra = method->progress(step);
        if (!extra.empty()) text += "  " + extra;
        log::info("train", text);
        JsonLine row;
        row.add("step", step + 1).add("loss", loss).add("lr", out.lr).add("steps_per_s", rate)
            .add("samples_per_s", rate * static_cast<double>(samples_per_step)).add("elapsed_s", elapsed);
        k = 2;
        for (const auto& [name, v] : stat_sums) row.add(name, means[k++].item<double>());
        if (bad_now > 0) row.add("nonfinite_steps", static_cast<double>(bad_now));
        for (const auto& [name, v] : method->metrics(step)) row.add(name, v);
        metrics->row(row);
      }
      method->logged(step, loss);
      result.final_loss = loss;
      loss_sum.zero_();
      finite_steps.zero_();
      bad_steps.zero_();
      for (auto& [name, v] : stat_sums) v.zero_();
      window = 0;
      window_first = step + 1;
      window_start = now;
    }
    if (config.eval_every > 0 && ((step + 1) % config.eval_every == 0 || last)) {
      if (rank == 0) {
        metrics->row(evaluator->run(step + 1, method->result(), device));
        metrics->image("samples", step + 1, evaluator->picture());
      }
      run.comm().barrier();
    }
    const CheckpointPolicy::Decision d = policy.after_step(step + 1, last);
    if (d.save || last) {
      const std::string bad = nonfinite_weights(run);
      if (!bad.empty()) report_divergence(run, first_bad, window_first, step, bad);
    }
    if (d.save) save(step + 1);
    if (d.stop) {
      result.stopped = true;
      result.steps = step + 1;
      log_stop(step + 1, d.signal);
      return result;
    }
  }
  result.steps = total;
  for (ModelGroup* g : method->trained_groups()) {
    result.replica_divergence =
        std::max(result.replica_divergence, dist::max_divergence(g->module().parameters(), run.comm()));
  }
  if (result.replica_divergence != 0) {
    log::warn("train", detail::str_cat("replicas diverged by ", result.replica_divergence));
  }
  if (rank == 0) {
    const sfs::path out = sfs::path(config.run_dir) / "model.h5";
    const ResultModel r = method->result();
    save_model(out, r.network, r.diffusion, r.group->net(), r.group->ema(), total);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    log::info("train", detail::str_cat("done in ", format_duration(secs), "; weights and EMA in ", out.string()));
    try {
      write_plots(config.run_dir);  // a failed plot is not a failed run
    } catch (const std::exception& e) {
      log::warn("train", detail::str_cat("no plots: ", e.what()));
    }
  }
  run.comm().barrier();
  return result;
}

}  // namespace unidiff::experiments
