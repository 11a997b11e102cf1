// experiments/run/checkpointing.h.
#include "experiments/run/checkpointing.h"

#include <cstdio>
#include <cstdlib>
#include <map>
#include <sstream>

#include "core/error.h"
#include "core/log.h"
#include "dist/signals.h"

namespace unidiff::experiments {
namespace {

/// For each parameter: the flat range of it this rank's optimizer shard holds, as
/// (parameter index, begin within the parameter, begin within the shard, count).
struct Owned {
  size_t param;
  int64_t param_begin;
  int64_t shard_begin;
  int64_t count;
  int bucket;
};

std::vector<Owned> owned_ranges(dist::Reducer& reducer) {
  std::vector<Owned> out;
  const auto& params = reducer.params();
  for (size_t k = 0; k < params.size(); ++k) {
    const auto slot = reducer.slot(k);
    const auto [sb, se] = reducer.shard_range(slot.bucket);
    const int64_t lo = std::max(slot.offset, sb);
    const int64_t hi = std::min(slot.offset + params[k].numel(), se);
    if (hi > lo) out.push_back({k, lo - slot.offset, lo - sb, hi - lo, slot.bucket});
  }
  return out;
}

}  // namespace

void save_group(dist::CheckpointWriter& w, ModelGroup& g) {
  const std::string& n = g.name();
  // Frozen groups stored in bfloat16 are written as float32 (HDF5 has no bfloat16; the values are exact).
  for (const auto& p : g.module().named_parameters()) {
    w.add_replicated(n + "/params/" + p.key(), p.value().to(torch::kFloat32));
  }
  if (!g.trained()) return;
  for (const auto& [name, t] : g.ema().shadow()) w.add_replicated(n + "/ema/" + name, t);
  w.set_attr(n + "/ema_updates", g.ema().updates());
  w.set_attr(n + "/optimizer_steps", g.optimizer().updates_applied());  // skipped steps not counted
  // Moments: whole buckets on every rank without ZeRO (rank 0 writes them), one slice per rank
  // with it; either way as pieces of per-parameter tensors.
  dist::Reducer& r = g.reducer();
  const bool writes = r.sharded() || r.comm().rank() == 0;
  if (!writes) return;
  const auto names = g.module().named_parameters().keys();
  for (const Owned& o : owned_ranges(r)) {
    const auto& p = r.params()[o.param];
    const auto& m = g.optimizer().exp_avg()[static_cast<size_t>(o.bucket)];
    const auto& v = g.optimizer().exp_avg_sq()[static_cast<size_t>(o.bucket)];
    w.add_piece(n + "/adam_m/" + names[o.param], p.sizes(), o.param_begin,
                m.slice(0, o.shard_begin, o.shard_begin + o.count));
    w.add_piece(n + "/adam_v/" + names[o.param], p.sizes(), o.param_begin,
                v.slice(0, o.shard_begin, o.shard_begin + o.count));
  }
}

void load_group(const dist::CheckpointReader& reader, ModelGroup& g) {
  const std::string& n = g.name();
  torch::NoGradGuard no_grad;
  if (!g.trained() && !g.module().named_parameters().is_empty() &&
      !reader.has(n + "/params/" + g.module().named_parameters().begin()->key())) {
    log::info("train", "the checkpoint holds no weights of the frozen group " + n + ": it keeps the weights it was built with");
    return;
  }
  for (auto& p : g.module().named_parameters()) {
    const std::string name = n + "/params/" + p.key();
    const torch::Tensor t = reader.read(name);
    UD_CHECK_INPUT(t.sizes() == p.value().sizes(), "checkpoint tensor ", name, " has shape ",
                   t.sizes(), " but the model's is ", p.value().sizes());
    p.value().copy_(t);
  }
  if (!g.trained()) return;
  for (auto& [name, t] : g.ema().shadow()) t.copy_(reader.read(n + "/ema/" + name));
  g.ema().set_updates(reader.attr_int(n + "/ema_updates").value_or(0));
  g.optimizer().set_steps(reader.attr_int(n + "/optimizer_steps").value_or(0));
  dist::Reducer& r = g.reducer();
  const auto names = g.module().named_parameters().keys();
  for (const Owned& o : owned_ranges(r)) {
    const torch::Tensor m = reader.read(n + "/adam_m/" + names[o.param]).reshape({-1});
    const torch::Tensor v = reader.read(n + "/adam_v/" + names[o.param]).reshape({-1});
    auto& mb = g.optimizer().exp_avg()[static_cast<size_t>(o.bucket)];
    auto& vb = g.optimizer().exp_avg_sq()[static_cast<size_t>(o.bucket)];
    mb.slice(0, o.shard_begin, o.shard_begin + o.count)
        .copy_(m.slice(0, o.param_begin, o.param_begin + o.count));
    vb.slice(0, o.shard_begin, o.shard_begin + o.count)
        .copy_(v.slice(0, o.param_begin, o.param_begin + o.count));
  }
}

void save_groups(dist::CheckpointWriter& w, ModelGroups& groups) {
  for (ModelGroup* g : groups.all()) save_group(w, *g);
}

void load_groups(const dist::CheckpointReader& reader, ModelGroups& groups) {
  for (ModelGroup* g : groups.all()) load_group(reader, *g);
}

std::string settings_hash(const Guard& settings) {
  uint64_t h = 14695981039346656037ULL;  // FNV-1a, 64 bits
  const auto mix = [&h](const std::string& s) {
    for (unsigned char c : s) {
      h ^= c;
      h *= 1099511628211ULL;
    }
  };
  for (const auto& [k, v] : settings) mix(k + "=" + v + "\n");
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

void save_settings(dist::CheckpointWriter& w, const Guard& settings) {
  for (const auto& [k, v] : settings) w.set_attr("config/" + k, v);
  w.set_attr("settings_version", kSettingsVersion);
  w.set_attr("config_hash", settings_hash(settings));
}

namespace {

/// Checkpoints before settings_version 2 recorded some settings under other names or formats.
Guard legacy_to_current(Guard g) {
  Guard out;
  for (auto& [k, v] : g) {
    if (k == "method") {
      out[k] = v == "ddpm" ? "pretrain" : v;  // pre-training was called ddpm
    } else if (k == "sigma_d") {
      out["sigma_data"] = v;
    } else if (k == "pd_teacher") {
      out["teacher"] = v;
    } else if (k == "model_depth_heads_patch") {  // "depth/heads/patch"
      const auto a = v.find('/'), b = v.rfind('/');
      if (a != std::string::npos && b != a) {
        out["model_depth"] = v.substr(0, a);
        out["model_heads"] = v.substr(a + 1, b - a - 1);
        out["model_patch"] = v.substr(b + 1);
      }
    } else if (k == "data_shape") {  // "[1, 28, 28]" -> "1,28,28"
      std::string s;
      for (char c : v) {
        if (c != '[' && c != ']' && c != ' ') s += c;
      }
      out[k] = s;
    } else if (k == "reflow") {  // "no" or the pairs' seed
      out[k] = v == "no" ? "false" : "true";
      if (v != "no") out["reflow_seed"] = v;
    } else {
      out[k] = v;
    }
  }
  return out;
}

/// Older checkpoints wrote numbers with %g (6 significant digits).
bool same_value(const std::string& was, const std::string& now, bool legacy) {
  if (was == now) return true;
  if (!legacy) return false;
  char* end = nullptr;
  const double v = std::strtod(now.c_str(), &end);
  if (now.empty() || *end != '\0') return false;
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", v);
  return was == buf;
}

}  // namespace

Guard recorded_settings(const dist::CheckpointReader& reader) {
  Guard g;
  for (const std::string& key : reader.attr_names()) {
    if (key.rfind("config/", 0) == 0) g[key.substr(7)] = reader.attr_string(key).value_or("");
  }
  return reader.attr_int("settings_version").value_or(1) < kSettingsVersion ? legacy_to_current(std::move(g)) : g;
}

namespace {

/// Guarded settings added after a checkpoint format was fixed, with the value every checkpoint
/// written before them implies: a checkpoint without the setting resumes when the run's value is
/// that one (a network's guidance embedding; the DDPM objective's reflow and training times).
const std::map<std::string, std::string>& implied_when_unrecorded() {
  static const std::map<std::string, std::string> m = {
      {"guidance", "0"}, {"reflow", "false"}, {"reflow_seed", "0"}, {"rf_time", "uniform"}};
  return m;
}

}  // namespace

std::vector<std::string> changed_settings(const dist::CheckpointReader& reader, const Guard& settings) {
  const bool legacy = reader.attr_int("settings_version").value_or(1) < kSettingsVersion;
  const Guard was = recorded_settings(reader);
  std::vector<std::string> out;
  for (const auto& [k, v] : settings) {
    const auto it = was.find(k);
    if (it == was.end()) {
      const auto implied = implied_when_unrecorded().find(k);
      if (implied != implied_when_unrecorded().end() && implied->second == v) continue;
      if (!legacy) out.push_back(k + ": (not recorded) -> " + v);
    } else if (!same_value(it->second, v, legacy)) {
      out.push_back(k + ": " + it->second + " -> " + v);
    }
  }
  return out;
}

CheckpointPolicy::CheckpointPolicy(const CheckpointConfig& config, dist::Communicator& comm)
    : config_(config), comm_(comm), last_save_(std::chrono::steady_clock::now()) {
  dist::install_stop_signals();
}

CheckpointPolicy::Decision CheckpointPolicy::after_step(int64_t steps_done, bool last) {
  const double minutes =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - last_save_).count() / 60;
  const int64_t due_by_clock =
      comm_.rank() == 0 && config_.save_every_minutes > 0 && minutes >= config_.save_every_minutes;
  torch::Tensor flags = torch::tensor({static_cast<int64_t>(dist::stop_signal_number()), due_by_clock},
                                      torch::kInt64);
  comm_.all_reduce(flags, dist::ReduceOp::kMax);
  Decision d;
  d.signal = static_cast<int>(flags[0].item<int64_t>());
  d.stop = !last && (d.signal != 0 || (config_.stop_at > 0 && steps_done == config_.stop_at));
  d.save = d.stop || last || flags[1].item<int64_t>() != 0 ||
           (config_.save_every > 0 && steps_done % config_.save_every == 0);
  if (d.save) last_save_ = std::chrono::steady_clock::now();
  return d;
}

std::optional<dist::CheckpointReader> open_resume(const std::string& run_dir, const CheckpointConfig& config,
                                                  bool overwrite, const Guard& settings) {
  if (overwrite) return std::nullopt;
  std::optional<dist::CheckpointReader> ckpt = checkpoint_to_resume(config.resume, run_dir);
  if (!ckpt) return std::nullopt;
  const auto changed = changed_settings(*ckpt, settings);
  if (!changed.empty()) {
    std::string list;
    for (const auto& c : changed) list += "\n  " + c;
    UD_CHECK_INPUT(config.allow_config_change, "the run in '", ckpt->dir().string(),
                   "' was made with other settings:", list,
                   "\npass --resume=never (and another --run_dir) to start afresh, or "
                   "--allow_config_change to resume anyway");
    log::warn("train", "resuming with changed settings:" + list);
  }
  return ckpt;
}

std::optional<dist::CheckpointReader> checkpoint_to_resume(const std::string& resume,
                                                           const std::filesystem::path& run_dir) {
  namespace sfs = std::filesystem;
  if (resume == "never") return std::nullopt;
  if (resume == "auto") return dist::CheckpointReader::find_latest(run_dir);
  const sfs::path p(resume);
  UD_CHECK_INPUT(sfs::exists(p), "--resume '", resume, "' does not exist (valid: auto, never, ",
                 "a checkpoint directory or a run directory)");
  if (sfs::exists(p / "manifest.h5") || p.filename().string().rfind("step-", 0) == 0) {
    return dist::CheckpointReader(p);  // verifies; InputError naming the damaged file
  }
  const auto found = dist::CheckpointReader::find_latest(p);
  UD_CHECK_INPUT(found.has_value(), "--resume '", resume, "' holds no complete checkpoint");
  return found;
}

}  // namespace unidiff::experiments
