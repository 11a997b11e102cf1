// experiments/run/progress.h.
#include "experiments/run/progress.h"

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/log.h"
#include "dist/signals.h"
#include "dist/world.h"

namespace unidiff::experiments {

namespace fs = std::filesystem;

void validate_optim(const OptimConfig& o, const std::string& prefix) {
  UD_CHECK_INPUT(o.decay == "constant" || o.decay == "cosine", "--", prefix, "optim_decay '", o.decay,
                 "' is unknown (valid: constant, cosine)");
  UD_CHECK_INPUT(o.lr > 0, "--", prefix, "optim_lr must be positive, got ", o.lr);
  UD_CHECK_INPUT(o.ema_decay >= 0 && o.ema_decay < 1, "--", prefix, "ema_decay must be in [0, 1), got ",
                 o.ema_decay);
}

void prepare_run_dir(const std::string& run_dir, const std::string& resolved_flags, bool overwrite,
                     const std::string& finished_file, bool fresh) {
  const fs::path dir(run_dir);
  UD_CHECK_INPUT(!fs::exists(dir) || fs::is_directory(dir), "--run_dir '", run_dir,
                 "' exists and is not a directory");
  UD_CHECK_INPUT(overwrite || finished_file.empty() || !fs::exists(dir / finished_file),
                 "--run_dir '", run_dir,
                 "' already holds a finished run (", finished_file,
                 "); choose another --run_dir or pass --overwrite");
  std::error_code ec;
  fs::create_directories(dir, ec);
  UD_CHECK_INPUT(!ec, "cannot create --run_dir '", run_dir, "': ", ec.message());
  // A directory that cannot be written is found now, not at the first checkpoint after the steps.
  std::ofstream flags(dir / "config.flags");
  flags << resolved_flags;
  flags.close();
  UD_CHECK_INPUT(flags.good(), "cannot write '", (dir / "config.flags").string(),
                 "': --run_dir must be writable (checkpoints, metrics and the model go there)");
  if (fresh) std::ofstream(dir / "metrics.jsonl", std::ios::trunc);
}

void log_stop(int64_t step, int signal) {
  if (dist::rank() != 0) return;
  log::info("train", detail::str_cat("stopped after step ", step,
                                     signal != 0 ? " on signal " + std::to_string(signal)
                                                 : std::string(" (--train_stop_at)"),
                                     "; checkpoint written; run the same command again to resume ",
                                     "(exit code ", dist::kExitRequeue, ")"));
}

std::string format_rate(double steps_per_second) {
  char buf[32];
  if (steps_per_second >= 10) std::snprintf(buf, sizeof(buf), "%.0f steps/s", steps_per_second);
  else if (steps_per_second >= 1) std::snprintf(buf, sizeof(buf), "%.1f steps/s", steps_per_second);
  else if (steps_per_second > 0) std::snprintf(buf, sizeof(buf), "%.2f s/step", 1 / steps_per_second);
  else std::snprintf(buf, sizeof(buf), "- steps/s");
  return buf;
}

}  // namespace unidiff::experiments
