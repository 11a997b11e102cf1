// Exponential moving average of a module's parameters (and a copy of its buffers), with the
// usual warm-up: the decay used at update k is min(decay, (1 + k) / (10 + k)).
#pragma once

#include <torch/nn/module.h>

#include <string>
#include <vector>

namespace unidiff::models {

class Ema {
 public:
  /// Starts as a copy of `module`'s parameters.
  Ema(const torch::nn::Module& module, double decay);

  /// shadow <- d * shadow + (1 - d) * param, with d the warmed-up decay; counts updates.
  void update(const torch::nn::Module& module);
  /// Copies the averaged parameters into `module` (of the same architecture).
  void copy_to(torch::nn::Module& module) const;

  double decay() const { return decay_; }
  int64_t updates() const { return updates_; }
  void set_updates(int64_t updates) { updates_ = updates; }
  /// Averaged tensors by parameter name.
  const std::vector<std::pair<std::string, torch::Tensor>>& shadow() const { return shadow_; }
  std::vector<std::pair<std::string, torch::Tensor>>& shadow() { return shadow_; }

 private:
  double decay_;
  int64_t updates_ = 0;
  std::vector<std::pair<std::string, torch::Tensor>> shadow_;
};

}  // namespace unidiff::models
