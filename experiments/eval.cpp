#include "experiments/eval.h"

#include "core/error.h"
#include "core/json.h"
#include "core/log.h"
#include "core/progress.h"
#include "data/dataset.h"
#include "dist/world.h"
#include "experiments/classifier.h"
#include "experiments/metrics.h"
#include "experiments/reward/rewards.h"

namespace unidiff::experiments {
namespace {

/// Images: FD of the classifier's features, the predicted class histogram of the samples, and
/// the fraction classified as the label they were generated for (when the samples carry labels).
void image_eval(const EvalConfig& c, const data::TensorDataset& samples, const data::TensorDataset& reference,
                JsonLine& line) {
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
  line.add("num_reference", reference.size())
      .add("fd", fd)
      .add("classifier", c.classifier)
      .add("classifier_test_accuracy", clf.test_accuracy)
      .raw("class_histogram", h);
  const torch::Tensor& labels = samples.labels();
  if (labels.defined()) {
    line.add("class_accuracy", (ps == labels).to(torch::kFloat64).mean().item<double>());
  }
}

/// The samples' rewards: mean, std and the smallest and largest (samples whose reward is not
/// finite are counted and left out).
void reward_eval(const EvalConfig& c, const data::TensorDataset& samples, JsonLine& line) {
  const Reward reward = make_reward(c.reward, samples.sample_shape(), torch::kCPU);
  torch::NoGradGuard no_grad;
  const torch::Tensor x = samples.all();
  std::vector<torch::Tensor> parts;
  const torch::Tensor& labels = samples.labels();
  UD_CHECK_INPUT(!reward.needs_labels || labels.defined(), "--reward_class=-1 rewards each sample's own class; '",
                 c.samples, "' has no /labels");
  Progress progress("eval", "samples", x.size(0));
  for (int64_t b = 0; b < x.size(0); b += 512) {
    progress.update(static_cast<double>(b));
    const torch::Tensor l = labels.defined() ? labels.slice(0, b, b + 512) : torch::Tensor();
    parts.push_back(reward.fn(x.slice(0, b, b + 512), l).to(torch::kFloat64));
  }
  const torch::Tensor r = torch::cat(parts);
  const torch::Tensor finite = r.index_select(0, r.isfinite().nonzero().view({-1}));
  UD_CHECK_INPUT(finite.numel() > 0, "no sample of '", c.samples, "' has a finite ", reward.name, " reward");
  line.add("reward", reward.name)
      .add("reward_mean", finite.mean().item<double>())
      .add("reward_std", finite.numel() > 1 ? finite.std().item<double>() : 0.0)
      .add("reward_min", finite.min().item<double>())
      .add("reward_max", finite.max().item<double>())
      .add("reward_nonfinite", r.numel() - finite.numel());
}

}  // namespace

std::string run_eval(const EvalConfig& c) {
  UD_CHECK_INPUT(!c.samples.empty(), "--samples is required");
  UD_CHECK_INPUT(!c.reference.empty() || !c.reward.name.empty(), "--reference (distances) or --reward (the mean ",
                 "reward) is required");
  UD_CHECK_INPUT(c.projections > 0, "--projections must be positive, got ", c.projections);
  UD_CHECK_INPUT(c.max_samples >= 2, "--max_samples must be at least 2, got ", c.max_samples);
  dist::configure_threads(c.threads);
  const data::TensorDataset samples = data::TensorDataset::load(c.samples);
  JsonLine line;
  line.add("samples", c.samples);
  if (!c.reference.empty()) line.add("reference", c.reference);
  line.add("num_samples", samples.size());
  if (!c.reference.empty()) {
    const data::TensorDataset reference = data::TensorDataset::load(c.reference);
    UD_CHECK_INPUT(samples.sample_shape() == reference.sample_shape(), "samples have shape ",
                   torch::IntArrayRef(samples.sample_shape()), " but the reference has ",
                   torch::IntArrayRef(reference.sample_shape()));
    if (!c.classifier.empty()) {
      image_eval(c, samples, reference, line);
    } else {
      UD_CHECK_INPUT(samples.sample_shape().size() == 1, "samples of shape ",
                     torch::IntArrayRef(samples.sample_shape()),
                     " are images: evaluate them with --classifier=FILE (make one with 'unidiff eval ",
                     "train-classifier')");
      const torch::Tensor x = samples.all(), y = reference.all();
      const double sw = sliced_wasserstein(x, y, c.projections, c.seed);
      const torch::Tensor xs = x.slice(0, 0, c.max_samples), ys = y.slice(0, 0, c.max_samples);
      const double h = median_distance(ys);
      const double mmd2 = mmd2_rbf(xs, ys, h);
      line.add("num_reference", reference.size())
          .add("sliced_wasserstein", sw)
          .add("sw_projections", c.projections)
          .add("mmd2", mmd2)
          .add("mmd_bandwidth", h)
          .add("mmd_samples", std::min(xs.size(0), ys.size(0)));
    }
  }
  if (!c.reward.name.empty()) reward_eval(c, samples, line);
  return line.str();
}

}  // namespace unidiff::experiments
