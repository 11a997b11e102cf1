// Curves of a run: every number metrics.jsonl records (the loss, the learning rate, throughput,
// each evaluation metric, rewards) against the step, one PNG each in RUN_DIR/plots/. Written by
// rank 0 at the end of `unidiff train`, and by `unidiff plot --run_dir=RUN` at any time (also
// during a run: metrics.jsonl is flushed at every log line).
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace unidiff::experiments {

/// Each numeric key of the rows of `metrics_path` with its (step, value) points in file order
/// (rows without "step" and non-numbers are skipped; null is a gap). InputError for a missing file.
std::map<std::string, std::vector<std::pair<double, double>>> read_metrics(const std::string& metrics_path);

/// Writes RUN_DIR/plots/<key>.png for every key with at least two finite points (line_plot) and
/// logs one line per plot (points, step range, first and last value). Returns the files written.
/// InputError when RUN_DIR has no metrics.jsonl.
std::vector<std::string> write_plots(const std::string& run_dir);

}  // namespace unidiff::experiments
