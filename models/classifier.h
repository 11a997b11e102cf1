// The small image classifier behind `unidiff eval` on image data: its penultimate features give
// the Frechet distance between generated and real images (FD, the role Inception plays for FID),
// its predictions the generated class histogram and the accuracy of class-conditional samples.
// Trained by unidiff itself (experiments/classifier.h), so evaluation needs no downloaded weights.
#pragma once

#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

namespace unidiff::models {

struct ClassifierOptions {
  ClassifierOptions(int64_t in_channels, int64_t resolution, int64_t num_classes)
      : in_channels_(in_channels), resolution_(resolution), num_classes_(num_classes) {}
  TORCH_ARG(int64_t, in_channels);
  /// Side of the square input images (a multiple of 4).
  TORCH_ARG(int64_t, resolution);
  TORCH_ARG(int64_t, num_classes);
  /// Width of the first two convolutions (the last two have twice as many channels).
  TORCH_ARG(int64_t, width) = 32;
  /// Size of the penultimate layer: the features of the Frechet distance.
  TORCH_ARG(int64_t, features) = 256;
};

/// conv3x3(w) ReLU conv3x3(w) ReLU maxpool2, conv3x3(2w) ReLU conv3x3(2w) ReLU maxpool2,
/// linear(features) ReLU (the features), linear(num_classes). Images in [-1, 1].
class ClassifierImpl : public torch::nn::Module {
 public:
  explicit ClassifierImpl(const ClassifierOptions& options);
  /// Penultimate features [B, features].
  torch::Tensor features(const torch::Tensor& x);
  /// Logits [B, num_classes].
  torch::Tensor forward(const torch::Tensor& x);
  /// Logits from features() (one pass for both).
  torch::Tensor logits(const torch::Tensor& features);

  ClassifierOptions options;

 private:
  torch::nn::Conv2d c1_{nullptr}, c2_{nullptr}, c3_{nullptr}, c4_{nullptr};
  torch::nn::Linear fc_{nullptr}, head_{nullptr};
};
TORCH_MODULE(Classifier);

}  // namespace unidiff::models
