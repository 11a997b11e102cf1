#include "experiments/eval.h"

#include "core/error.h"
#include "core/json.h"
#include "core/log.h"
#include "data/dataset.h"
#include "dist/world.h"
#include "experiments/classifier.h"
#include "experiments/metrics.h"

namespace unidiff::experiments {
namespace {

/// Images: FD of the classifier's features, the predicted class histogram of the samples, and
/// the fraction classified as the label they were generated for (when the samples carry labels).
std::string image_eval(const EvalConfig& c, const data::TensorDataset& samples, const data::TensorDataset& reference) {
  dist::configure_threads(c.threads);
  LoadedClassifier clf = load_classifier(c.classifier);
  const auto& o = clf.net->options;
  const auto shape = samples.sample_shape();
  UD_CHECK_INPUT(shape == std::vector<int64_t>({o.in_channels(), o.resolution(), o.resolution()}),
                 "the classifier '", c.classifier, "' takes images [", o.in_channels(), ", ", o.resolution(), ", ",
                 o.resolution(), "]; the samples are ", torch::IntArrayRef(shape));
  log::info("eval", detail::str_cat("features of ", samples.size(), " samples and ", reference.size(),
                                    " reference images"));
  const auto [fs, ps] = classify(clf.net, samples.all());
  const auto [fr, pr] = classify(clf.net, reference.all());
  const double fd = frechet_distance(fs, fr);
  const torch::Tensor hist = torch::bincount(ps, {}, o.num_classes());
  std::string h = "[";
  for (int64_t k = 0; k < o.num_classes(); ++k) {
    if (k > 0) h += ",";
    h += std::to_string(hist[k].item<int64_t>());
  }
  h += "]";
  JsonLine line;
  line.add("samples", c.samples)
      .add("reference", c.reference)
      .add("num_samples", samples.size())
      .add("num_reference", reference.size())
      .add("fd", fd)
      .add("classifier", c.classifier)
      .add("classifier_test_accuracy", clf.test_accuracy)
      .raw("class_histogram", h);
  const torch::Tensor& labels = samples.labels();
  if (labels.defined()) {
    line.add("class_accuracy", (ps == labels).to(torch::kFloat64).mean().item<double>());
  }
  return line.str();
}

}  // namespace

std::string run_eval(const EvalConfig& c) {
  UD_CHECK_INPUT(!c.samples.empty(), "--samples is required");
  UD_CHECK_INPUT(!c.reference.empty(), "--reference is required");
  UD_CHECK_INPUT(c.projections > 0, "--projections must be positive, got ", c.projections);
  UD_CHECK_INPUT(c.max_samples >= 2, "--max_samples must be at least 2, got ", c.max_samples);
  const data::TensorDataset samples = data::TensorDataset::load(c.samples);
  const data::TensorDataset reference = data::TensorDataset::load(c.reference);
  UD_CHECK_INPUT(samples.sample_shape() == reference.sample_shape(), "samples have shape ",
                 torch::IntArrayRef(samples.sample_shape()), " but the reference has ",
                 torch::IntArrayRef(reference.sample_shape()));
  if (!c.classifier.empty()) return image_eval(c, samples, reference);
  UD_CHECK_INPUT(samples.sample_shape().size() == 1, "samples of shape ", torch::IntArrayRef(samples.sample_shape()),
                 " are images: evaluate them with --classifier=FILE (make one with 'unidiff eval train-classifier')");
  const torch::Tensor x = samples.all(), y = reference.all();
  const double sw = sliced_wasserstein(x, y, c.projections, c.seed);
  const torch::Tensor xs = x.slice(0, 0, c.max_samples), ys = y.slice(0, 0, c.max_samples);
  const double h = median_distance(ys);
  const double mmd2 = mmd2_rbf(xs, ys, h);
  return JsonLine()
      .add("samples", c.samples)
      .add("reference", c.reference)
      .add("num_samples", samples.size())
      .add("num_reference", reference.size())
      .add("sliced_wasserstein", sw)
      .add("sw_projections", c.projections)
      .add("mmd2", mmd2)
      .add("mmd_bandwidth", h)
      .add("mmd_samples", std::min(xs.size(0), ys.size(0)))
      .str();
}

}  // namespace unidiff::experiments
