#include "models/classifier.h"

#include <torch/nn/functional/activation.h>
#include <torch/nn/functional/pooling.h>

#include "core/error.h"

namespace unidiff::models {

ClassifierImpl::ClassifierImpl(const ClassifierOptions& o) : options(o) {
  UD_CHECK_INPUT(o.in_channels() > 0 && o.num_classes() > 1 && o.resolution() >= 4 && o.resolution() % 4 == 0,
                 "classifier needs channels > 0, at least 2 classes and a resolution divisible by 4; got ",
                 o.in_channels(), " channels, ", o.num_classes(), " classes, resolution ", o.resolution());
  auto conv = [](int64_t in, int64_t out) {
    return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).padding(1));
  };
  const int64_t w = o.width();
  c1_ = register_module("c1", conv(o.in_channels(), w));
  c2_ = register_module("c2", conv(w, w));
  c3_ = register_module("c3", conv(w, 2 * w));
  c4_ = register_module("c4", conv(2 * w, 2 * w));
  const int64_t side = o.resolution() / 4;
  fc_ = register_module("fc", torch::nn::Linear(2 * w * side * side, o.features()));
  head_ = register_module("head", torch::nn::Linear(o.features(), o.num_classes()));
}

torch::Tensor ClassifierImpl::features(const torch::Tensor& x) {
  UD_CHECK_INPUT(x.dim() == 4 && x.size(1) == options.in_channels() && x.size(2) == options.resolution() &&
                     x.size(3) == options.resolution(),
                 "the classifier takes images [B, ", options.in_channels(), ", ", options.resolution(), ", ",
                 options.resolution(), "], got ", x.sizes());
  namespace F = torch::nn::functional;
  torch::Tensor h = torch::relu(c2_->forward(torch::relu(c1_->forward(x))));
  h = F::max_pool2d(h, F::MaxPool2dFuncOptions(2));
  h = torch::relu(c4_->forward(torch::relu(c3_->forward(h))));
  h = F::max_pool2d(h, F::MaxPool2dFuncOptions(2));
  return torch::relu(fc_->forward(h.flatten(1)));
}

torch::Tensor ClassifierImpl::forward(const torch::Tensor& x) { return head_->forward(features(x)); }

torch::Tensor ClassifierImpl::logits(const torch::Tensor& features) { return head_->forward(features); }

}  // namespace unidiff::models
