// experiments/run/evaluation.h.
#include "experiments/run/evaluation.h"

#include <chrono>

#include "core/error.h"
#include "core/image.h"
#include "core/json.h"
#include "core/log.h"
#include "experiments/metrics.h"
#include "experiments/run/progress.h"
#include "experiments/sample.h"

namespace unidiff::experiments {

TrainingEval::TrainingEval(const RunConfig& c, const std::vector<int64_t>& data_shape,
                           const data::TensorDataset& train_data)
    : num_(c.eval_samples) {
  const data::TensorDataset ref =
      c.eval_reference.empty() ? train_data : data::TensorDataset::load(c.eval_reference);
  UD_CHECK_INPUT(ref.sample_shape() == data_shape, "--eval_reference holds samples of shape ",
                 torch::IntArrayRef(ref.sample_shape()), "; the model makes ", torch::IntArrayRef(data_shape));
  UD_CHECK_INPUT(num_ >= 2, "--eval_every needs --eval_samples >= 2, got ", num_);
  images_ = data_shape.size() == 3;
  if (images_) {
    UD_CHECK_INPUT(!c.eval_classifier.empty(), "--eval_every on images needs --eval_classifier (make one with ",
                   "'unidiff eval train-classifier')");
    classifier_ = load_classifier(c.eval_classifier);
    reference_features_ = classify(classifier_.net, ref.all()).first;
  } else {
    reference_ = ref.all().slice(0, 0, 20000);
  }
}

JsonLine TrainingEval::run(int64_t step, const ResultModel& result, torch::Device device) {
  const auto start = std::chrono::steady_clock::now();
  LoadedModel m{result.network, result.diffusion, models::make_network(result.network), step};
  result.group->ema().copy_to(*m.module);
  SampleConfig sc;
  sc.num = num_;
  sc.batch = images_ ? 500 : 4096;
  sc.seed = 0;
  torch::Tensor samples;
  try {
    torch::NoGradGuard no_grad;
    samples = draw_samples(sc, m, device, /*stop_on_signal=*/true);  // a stop interrupts it within a chunk
  } catch (const SamplingStopped&) {
    log::info("eval", detail::str_cat("step ", step, ": evaluation abandoned, a stop was requested"));
    return JsonLine().add("step", step).add("eval_stopped", int64_t{1});
  }
  if (images_ && (samples.size(1) == 1 || samples.size(1) == 3)) {
    picture_ = image::image_grid(samples.slice(0, 0, std::min<int64_t>(64, samples.size(0))).clamp(-1, 1), 8);
  } else if (!images_ && samples.dim() == 2 && samples.size(1) == 2) {
    picture_ = image::scatter_plot(samples, reference_.slice(0, 0, 5000));
  }
  JsonLine row;
  row.add("step", step).add("eval_samples", num_);
  std::string what;
  if (images_) {
    const auto [features, predicted] = classify(classifier_.net, samples);
    const double fd = frechet_distance(features, reference_features_);
    row.add("eval_fd", fd);
    what = detail::str_cat("FD ", fd);
    if (result.network.num_classes > 0) {
      const torch::Tensor want = torch::arange(num_, torch::kInt64).remainder(result.network.num_classes);
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
  return row;
}

}  // namespace unidiff::experiments
