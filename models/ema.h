// Exponential moving average of a module's parameters, with the usual warm-up: the decay used at
// update k is min(decay, (1 + k) / (10 + k)).
//
// The update is split in two so a captured CUDA graph can replay its kernels: schedule() is host
// work (the warmed-up decay of this update, written into a device scalar; the update count) and
// apply() launches kernels only (shadow <- lerp(shadow, param, 1 - d), reading that scalar).
// Parameters that share storage (a reducer's flat buckets) are averaged as one flat tensor each:
// one kernel per bucket instead of one per parameter.
#pragma once

#include <torch/nn/module.h>

#include <string>
#include <vector>

namespace unidiff::models {

class Ema {
 public:
  /// Starts as a copy of `module`'s parameters (on their device).
  Ema(const torch::nn::Module& module, double decay);

  /// schedule() then apply(): shadow <- d * shadow + (1 - d) * param.
  void update(const torch::nn::Module& module);
  /// Host half of an update: the warmed-up decay d of update number updates(), written as 1 - d
  /// into the device scalar apply() reads; counts the update. Returns d.
  double schedule();
  /// Device half: shadow <- shadow + w (param - shadow), w the scalar schedule() wrote; with
  /// `skip` (float32 [1] on the device, 1: a skipped non-finite step) w is 0 and nothing moves.
  void apply(const torch::nn::Module& module, const torch::Tensor& skip = {});
  /// Copies the averaged parameters into `module` (of the same architecture).
  void copy_to(torch::nn::Module& module) const;

  double decay() const { return decay_; }
  int64_t updates() const { return updates_; }
  void set_updates(int64_t updates) { updates_ = updates; }
  /// Averaged tensors by parameter name (views into the flat shadows).
  const std::vector<std::pair<std::string, torch::Tensor>>& shadow() const { return shadow_; }
  std::vector<std::pair<std::string, torch::Tensor>>& shadow() { return shadow_; }

 private:
  /// One storage of the module's parameters: the whole storage as a flat tensor, its shadow.
  struct Flat {
    const void* storage = nullptr;
    size_t param = 0;      ///< the first parameter (in named_parameters() order) stored there
    torch::Tensor params;  ///< the storage as a flat tensor
    torch::Tensor shadow;  ///< its average
  };
  /// The flat view of the storage behind `param`.
  static torch::Tensor storage_view(const torch::Tensor& param);

  double decay_;
  int64_t updates_ = 0;
  torch::Tensor weight_;  ///< float32 0-dim on the parameters' device: 1 - d of the coming apply()
  std::vector<Flat> flats_;
  std::vector<std::pair<std::string, torch::Tensor>> shadow_;
};

}  // namespace unidiff::models
