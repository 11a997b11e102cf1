// Rank 0's record of a run: the rows of RUN_DIR/metrics.jsonl and, beside it, the same numbers (and
// each evaluation's picture) in a TensorBoard event file (core/tensorboard.h), both flushed at
// every row.
#pragma once

#include <torch/types.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "core/json.h"
#include "core/tensorboard.h"

namespace unidiff::experiments {

class MetricsLog {
 public:
  /// Appends to RUN_DIR/metrics.jsonl; with `tensorboard`, writes a new event file in RUN_DIR.
  /// `start_step` is 0 or the step a resumed run continues from: the file starts with a session
  /// START at start_step + 1, so TensorBoard drops what an earlier file logged after the
  /// checkpoint (rows are numbered by steps done; those up to start_step stand). A TensorBoard
  /// failure is a warning, never a failed run.
  MetricsLog(const std::filesystem::path& run_dir, bool tensorboard, int64_t start_step);

  /// One row: appended to metrics.jsonl, and each finite number other than "step" as a scalar
  /// of that name at the row's step.
  void row(const JsonLine& row);
  /// A picture (uint8 [H, W, 3]) at `step`, TensorBoard only.
  void image(const std::string& tag, int64_t step, const torch::Tensor& rgb);

 private:
  void tensorboard_failed(const std::exception& e);
  std::ofstream jsonl_;
  std::unique_ptr<tensorboard::EventWriter> events_;
};

}  // namespace unidiff::experiments
