#include "models/keyed_dropout.h"

#include "models/group_norm_act.h"

#include <torch/csrc/autograd/custom_function.h>
#include <torch/nn/functional/dropout.h>

#include "core/error.h"
#include "core/rng.h"

namespace unidiff::models {
namespace {

thread_local const DropoutKey* current_key = nullptr;

using torch::autograd::AutogradContext;

/// y = x * keep * scale on CUDA through the fused kernel; the backward pass draws the same mask
/// again from the key (dL/dx = dL/dy * keep * scale, the same operation), so no mask is stored.
class FusedKeyedDropout : public torch::autograd::Function<FusedKeyedDropout> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& index,
                               rng::Stream stream, const rng::StepKey& step, double p) {
    ctx->saved_data["index"] = index;
    ctx->saved_data["seed"] = static_cast<int64_t>(stream.seed);
    ctx->saved_data["host"] = static_cast<int64_t>(step.host);
    ctx->saved_data["counter"] = step.counter.defined() ? c10::IValue(step.counter) : c10::IValue();
    ctx->saved_data["shift"] = static_cast<int64_t>(step.shift);
    ctx->saved_data["low"] = static_cast<int64_t>(step.low);
    ctx->saved_data["p"] = p;
    return rng::apply_dropout_mask(stream, step, index, x, p);
  }

  static torch::autograd::variable_list backward(AutogradContext* ctx, torch::autograd::variable_list grads) {
    auto& d = ctx->saved_data;
    const rng::Stream stream{static_cast<uint32_t>(d["seed"].toInt()), rng::Purpose::kDropout};
    const rng::StepKey step = d["counter"].isTensor()
                                  ? rng::StepKey(d["counter"].toTensor(), static_cast<unsigned>(d["shift"].toInt()),
                                                 static_cast<uint32_t>(d["low"].toInt()))
                                  : rng::StepKey(static_cast<uint64_t>(d["host"].toInt()));
    torch::Tensor dx;
    if (grads[0].defined()) dx = rng::apply_dropout_mask(stream, step, d["index"].toTensor(), grads[0], d["p"].toDouble());
    return {dx, torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

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
  const rng::Stream stream{current_key->seed, rng::Purpose::kDropout};
  // On CUDA one fused kernel each way; elsewhere, and under forward-mode AD (sCM's JVP: the fused
  // function has no forward-mode rule), the uniforms and two products (autograd keeps the mask).
  // The same numbers bit for bit.
  if (x.is_cuda() && rng::has_cuda_kernels() && !has_forward_grad(x)) {
    return FusedKeyedDropout::apply(x, current_key->index, stream, step, p);
  }
  return rng::apply_dropout_mask(stream, step, current_key->index, x, p);
}

}  // namespace unidiff::models
