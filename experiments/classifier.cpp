#include "experiments/classifier.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <numbers>

#include <torch/nn/functional/loss.h>
#include <torch/optim/adam.h>

#include "core/error.h"
#include "core/progress.h"
#include "core/h5.h"
#include "core/log.h"
#include "core/rng.h"
#include "data/dataset.h"
#include "dist/world.h"
#include "experiments/model_io.h"

namespace unidiff::experiments {
namespace {

constexpr const char* kFormat = "unidiff-classifier-v1";

data::TensorDataset load_labelled(const std::string& path, const char* flag) {
  UD_CHECK_INPUT(!path.empty(), flag, " is required (labelled images)");
  data::TensorDataset d = data::TensorDataset::load(path);
  const auto shape = d.sample_shape();
  UD_CHECK_INPUT(d.num_classes() > 1, flag, " '", path, "' has no /labels (the classifier needs classes)");
  UD_CHECK_INPUT(shape.size() == 3 && shape[1] == shape[2], flag, " '", path,
                 "' does not hold square images [N, C, H, H]; its samples are ", torch::IntArrayRef(shape));
  return d;
}

double accuracy(models::Classifier& net, const data::TensorDataset& d) {
  torch::NoGradGuard no_grad;
  net->eval();
  int64_t right = 0;
  for (int64_t b = 0; b < d.size(); b += 1000) {
    const data::Batch batch = d.get(torch::arange(b, std::min(d.size(), b + 1000), torch::kInt64));
    right += (net->forward(batch.x).argmax(1) == batch.labels).sum().item<int64_t>();
  }
  net->train();
  return static_cast<double>(right) / static_cast<double>(d.size());
}

}  // namespace

double train_classifier(const ClassifierTrainConfig& c) {
  UD_CHECK_INPUT(!c.out.empty(), "--out is required (the classifier file to write)");
  UD_CHECK_INPUT(c.epochs > 0 && c.batch > 0 && c.lr > 0, "epochs, batch and learning rate must be positive");
  const data::TensorDataset train = load_labelled(c.data, "--data");
  const data::TensorDataset test = load_labelled(c.test, "--reference");
  UD_CHECK_INPUT(test.sample_shape() == train.sample_shape() && test.num_classes() == train.num_classes(),
                 "--reference holds ", torch::IntArrayRef(test.sample_shape()), " images of ", test.num_classes(),
                 " classes; --data ", torch::IntArrayRef(train.sample_shape()), " of ", train.num_classes());
  const auto shape = train.sample_shape();
  dist::configure_threads(c.threads);
  torch::manual_seed(c.seed);
  models::Classifier net(models::ClassifierOptions(shape[0], shape[1], train.num_classes()));
  torch::optim::Adam opt(net->parameters(), torch::optim::AdamOptions(c.lr));
  const int64_t per_epoch = train.size() / c.batch, total = per_epoch * c.epochs;
  UD_CHECK_INPUT(per_epoch > 0, "--classifier_batch ", c.batch, " exceeds the ", train.size(), " training images");
  log::info("classifier", detail::str_cat("training on ", train.size(), " images of ", torch::IntArrayRef(shape),
                                          " (", train.num_classes(), " classes), ", c.epochs, " epochs of ",
                                          per_epoch, " steps"));
  const auto start = std::chrono::steady_clock::now();
  double acc = 0;
  int64_t step = 0;
  for (int64_t epoch = 0; epoch < c.epochs; ++epoch) {
    const torch::Tensor order = rng::permutation({c.seed, rng::Purpose::kDataOrder}, static_cast<uint64_t>(epoch),
                                                 train.size());
    double loss_sum = 0;
    for (int64_t i = 0; i < per_epoch; ++i, ++step) {
      const double lr = c.lr * 0.5 * (1 + std::cos(std::numbers::pi * static_cast<double>(step) / static_cast<double>(total)));
      for (auto& g : opt.param_groups()) static_cast<torch::optim::AdamOptions&>(g.options()).lr(lr);
      const data::Batch b = train.get(order.slice(0, i * c.batch, (i + 1) * c.batch));
      opt.zero_grad();
      const torch::Tensor loss = torch::nn::functional::cross_entropy(net->forward(b.x), b.labels);
      loss.backward();
      opt.step();
      loss_sum += loss.item<double>();
      if ((i + 1) % 100 == 0) {
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        char line[160];
        std::snprintf(line, sizeof(line), "epoch %ld step %ld/%ld  loss %.4f  %.1f steps/s", epoch + 1, i + 1,
                      per_epoch, loss_sum / 100, static_cast<double>(step + 1) / secs);
        log::info("classifier", line);
        loss_sum = 0;
      }
    }
    acc = accuracy(net, test);
    log::info("classifier", detail::str_cat("epoch ", epoch + 1, ": test accuracy ", acc));
  }
  net->eval();
  h5::write_atomically(c.out, [&](h5::File& f) {
    h5::write_attr(f, "/", "format", std::string(kFormat));
    h5::write_attr(f, "/", "in_channels", shape[0]);
    h5::write_attr(f, "/", "resolution", shape[1]);
    h5::write_attr(f, "/", "num_classes", train.num_classes());
    h5::write_attr(f, "/", "width", net->options.width());
    h5::write_attr(f, "/", "features", net->options.features());
    h5::write_attr(f, "/", "test_accuracy", acc);
    h5::write_attr(f, "/", "trained_on", c.data);
    for (const auto& p : net->named_parameters()) h5::write_tensor(f, "/params/" + p.key(), p.value().detach());
  });
  log::info("classifier", detail::str_cat("test accuracy ", acc, "; written to ", c.out));
  return acc;
}

LoadedClassifier load_classifier(const std::filesystem::path& path) {
  const h5::File f = h5::File::open_read(path);
  const auto format = h5::read_attr_string(f, "/", "format");
  UD_CHECK_INPUT(format && *format == kFormat, "'", path.string(), "' is not a unidiff classifier (format ",
                 format ? *format : "missing", ", expected ", kFormat, "; make one with 'unidiff eval train-classifier')");
  auto need = [&](const char* key) {
    const auto v = h5::read_attr_int(f, "/", key);
    UD_CHECK_INPUT(v.has_value(), "'", path.string(), "' lacks the attribute ", key);
    return *v;
  };
  LoadedClassifier out;
  out.net = models::Classifier(models::ClassifierOptions(need("in_channels"), need("resolution"), need("num_classes"))
                                   .width(need("width"))
                                   .features(need("features")));
  out.test_accuracy = h5::read_attr_double(f, "/", "test_accuracy").value_or(0);
  out.trained_on = h5::read_attr_string(f, "/", "trained_on").value_or("");
  read_parameters(f, path, "/params", *out.net);
  out.net->eval();
  return out;
}

std::pair<torch::Tensor, torch::Tensor> classify(models::Classifier& net, const torch::Tensor& images) {
  torch::NoGradGuard no_grad;
  net->eval();
  std::vector<torch::Tensor> feats, preds;
  Progress progress("classify", "images", images.size(0));
  for (int64_t b = 0; b < images.size(0); b += 1000) {
    progress.update(static_cast<double>(b));
    torch::Tensor x = data::TensorDataset::decode(images.slice(0, b, std::min(images.size(0), b + 1000)));
    x = (((x.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1).to(torch::kFloat32);
    const torch::Tensor h = net->features(x);
    feats.push_back(h.to(torch::kFloat64));
    preds.push_back(net->logits(h).argmax(1));
  }
  return {torch::cat(feats), torch::cat(preds)};
}

}  // namespace unidiff::experiments
