// experiments/run/metrics_log.h.
#include "experiments/run/metrics_log.h"

#include <algorithm>
#include <cmath>

#include "core/image.h"
#include "core/log.h"

namespace unidiff::experiments {

MetricsLog::MetricsLog(const std::filesystem::path& run_dir, bool tensorboard, int64_t start_step) {
  jsonl_.open(run_dir / "metrics.jsonl", std::ios::app);
  if (!tensorboard) return;
  if (!tensorboard::EventWriter::available()) {
    log::warn("train", "this build writes no TensorBoard event files (it was configured without protobuf)");
    return;
  }
  try {
    events_ = std::make_unique<tensorboard::EventWriter>(run_dir, start_step + 1);
    log::info("train", "TensorBoard events in " + events_->path().string());
  } catch (const std::exception& e) {
    tensorboard_failed(e);
  }
}

void MetricsLog::tensorboard_failed(const std::exception& e) {
  log::warn("train", std::string(e.what()) + " (the run goes on; metrics.jsonl has every number)");
  events_.reset();
}

void MetricsLog::row(const JsonLine& row) {
  jsonl_ << row.str() << "\n";
  jsonl_.flush();
  if (!events_) return;
  const auto& numbers = row.numbers();
  const auto step = std::find_if(numbers.begin(), numbers.end(), [](const auto& kv) { return kv.first == "step"; });
  if (step == numbers.end()) return;
  try {
    for (const auto& [k, v] : numbers) {
      if (k != "step" && std::isfinite(v)) events_->scalar(k, static_cast<int64_t>(step->second), v);
    }
    events_->flush();
  } catch (const std::exception& e) {
    tensorboard_failed(e);
  }
}

void MetricsLog::image(const std::string& tag, int64_t step, const torch::Tensor& rgb) {
  if (!events_ || !rgb.defined()) return;
  try {
    events_->image(tag, step, image::encode_png(rgb), rgb.size(0), rgb.size(1), 3);
    events_->flush();
  } catch (const std::exception& e) {
    tensorboard_failed(e);
  }
}

}  // namespace unidiff::experiments
