// Evaluation during training (--eval_every): rank 0 samples the method's result model (its EMA
// weights) with the model's own default sampler and a fixed sampling key (the same starting noise
// in every run and at every step, so the numbers compare) and measures the sliced Wasserstein
// distance to the reference (vectors) or the classifier's FD and class accuracy (images).
#pragma once

#include <cstdint>
#include <string>

#include <torch/types.h>

#include "core/json.h"
#include "data/dataset.h"
#include "experiments/classifier.h"
#include "experiments/run/method.h"
#include "experiments/run/run_config.h"

namespace unidiff::experiments {

class TrainingEval {
 public:
  /// Loads the reference (--eval_reference, else `train_data`) and for images the classifier;
  /// InputError on a mismatch with `data_shape`.
  TrainingEval(const RunConfig& config, const std::vector<int64_t>& data_shape, const data::TensorDataset& train_data);

  /// Samples `model` and returns one row for metrics.jsonl (also logged).
  JsonLine run(int64_t step, const ResultModel& model, torch::Device device);
  /// The last run's samples as a picture, uint8 [H, W, 3]: a grid of the first 64 images, or a
  /// scatter plot over the reference for 2-D vectors; undefined for other data.
  const torch::Tensor& picture() const { return picture_; }

 private:
  int64_t num_;
  bool images_ = false;
  torch::Tensor reference_, reference_features_;
  LoadedClassifier classifier_;
  torch::Tensor picture_;
};

}  // namespace unidiff::experiments
