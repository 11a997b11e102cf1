#include "models/ema.h"

#include "core/error.h"

namespace unidiff::models {

Ema::Ema(const torch::nn::Module& module, double decay) : decay_(decay) {
  UD_ASSERT(decay >= 0 && decay < 1, "EMA decay ", decay);
  torch::NoGradGuard no_grad;
  for (const auto& p : module.named_parameters()) {
    shadow_.emplace_back(p.key(), p.value().detach().clone());
  }
}

void Ema::update(const torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  const double k = static_cast<double>(updates_);
  const double d = std::min(decay_, (1 + k) / (10 + k));
  const auto params = module.named_parameters();
  UD_ASSERT(params.size() == shadow_.size(), "EMA of a different module");
  size_t i = 0;
  for (const auto& p : params) {
    shadow_[i++].second.mul_(d).add_(p.value().detach(), 1 - d);
  }
  ++updates_;
}

void Ema::copy_to(torch::nn::Module& module) const {
  torch::NoGradGuard no_grad;
  auto params = module.named_parameters();
  UD_ASSERT(params.size() == shadow_.size(), "EMA of a different module");
  size_t i = 0;
  for (auto& p : params) p.value().copy_(shadow_[i++].second);
}

}  // namespace unidiff::models
