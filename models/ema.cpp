#include "models/ema.h"

#include <algorithm>

#include "core/error.h"

namespace unidiff::models {

torch::Tensor Ema::storage_view(const torch::Tensor& param) {
  const torch::Tensor d = param.detach();
  const int64_t n = static_cast<int64_t>(d.storage().nbytes()) / d.element_size();
  return torch::empty({0}, d.options()).set_(d.storage(), 0, {n}, {1});
}

Ema::Ema(const torch::nn::Module& module, double decay) : decay_(decay) {
  UD_ASSERT(decay >= 0 && decay < 1, "EMA decay ", decay);
  torch::NoGradGuard no_grad;
  for (const auto& p : module.named_parameters()) {
    const void* storage = p.value().storage().unsafeGetStorageImpl();
    auto it = std::find_if(flats_.begin(), flats_.end(), [&](const Flat& f) { return f.storage == storage; });
    if (it == flats_.end()) {
      const torch::Tensor flat = storage_view(p.value());
      flats_.push_back({storage, shadow_.size(), flat, flat.clone()});
      it = flats_.end() - 1;
    }
    // The parameter's own view of the storage, laid over the shadow (same offset and strides).
    shadow_.emplace_back(p.key(), it->shadow.as_strided(p.value().sizes(), p.value().strides(),
                                                         p.value().storage_offset()));
    if (!weight_.defined()) {
      weight_ = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat32).device(p.value().device()));
    }
  }
}

double Ema::schedule() {
  const double k = static_cast<double>(updates_);
  const double d = std::min(decay_, (1 + k) / (10 + k));
  if (weight_.defined()) {
    torch::NoGradGuard no_grad;
    weight_.fill_(1 - d);
  }
  ++updates_;
  return d;
}

void Ema::apply(const torch::nn::Module& module, const torch::Tensor& skip) {
  torch::NoGradGuard no_grad;
  const auto params = module.named_parameters();
  UD_ASSERT(params.size() == shadow_.size(), "EMA of a different module");
  const torch::Tensor w = skip.defined() ? weight_ * (1 - skip.reshape({})) : weight_;
  for (Flat& f : flats_) {
    UD_ASSERT(params[f.param].value().storage().unsafeGetStorageImpl() == f.storage,
              "EMA of a different module (or its parameters moved to other storage)");
    f.shadow.lerp_(f.params, w);
  }
}

void Ema::update(const torch::nn::Module& module) {
  schedule();
  apply(module);
}

void Ema::copy_to(torch::nn::Module& module) const {
  torch::NoGradGuard no_grad;
  auto params = module.named_parameters();
  UD_ASSERT(params.size() == shadow_.size(), "EMA of a different module");
  size_t i = 0;
  for (auto& p : params) p.value().copy_(shadow_[i++].second);
}

}  // namespace unidiff::models
