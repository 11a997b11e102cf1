#include "models/keyed_dropout.h"

#include <torch/nn/functional/dropout.h>

#include "core/error.h"
#include "core/rng.h"

namespace unidiff::models {
namespace {

thread_local const DropoutKey* current_key = nullptr;

}  // namespace

DropoutKeyScope::DropoutKeyScope(DropoutKey key) : key_(std::move(key)), previous_(current_key) {
  current_key = &key_;
}

DropoutKeyScope::~DropoutKeyScope() { current_key = previous_; }

torch::Tensor keyed_dropout(const torch::Tensor& x, double p, bool training, int64_t layer) {
  if (!training || p <= 0) return x;
  if (current_key == nullptr) {
    return torch::nn::functional::dropout(x, torch::nn::functional::DropoutFuncOptions().p(p).training(true));
  }
  UD_ASSERT(layer >= 0 && layer < (int64_t{1} << 16), "dropout layer number out of range: ", layer);
  UD_ASSERT(current_key->index.defined() && current_key->index.size(0) == x.size(0), "the dropout key covers ",
            current_key->index.defined() ? current_key->index.size(0) : 0, " samples, the batch has ", x.size(0));
  // The counter's step carries the layer in its low 16 bits: masks of different layers and steps
  // never share numbers.
  const rng::StepKey step = current_key->step_counter.defined()
                                ? rng::StepKey(current_key->step_counter, 16, static_cast<uint32_t>(layer))
                                : rng::StepKey((current_key->step << 16) | static_cast<uint64_t>(layer));
  const torch::Tensor u = rng::uniform({current_key->seed, rng::Purpose::kDropout}, step, current_key->index,
                                       x.sizes().slice(1), x.device());
  return x * (u >= p).to(x.scalar_type()) * (1.0 / (1.0 - p));
}

}  // namespace unidiff::models
