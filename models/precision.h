// Mixed precision and memory format of a training step (FORMULAS-independent plumbing).
//
// Precision "bf16": the forward pass and the loss run under LibTorch's autocast with bfloat16 on
// the step's device (CUDA, or CPU where the kernels exist); parameters, gradients, the optimizer's
// moments and the EMA stay float32 (master weights), so only activations are bfloat16. The
// backward pass runs outside the scope, as autocast requires. Precision "fp32" does nothing.
//
// Channels-last (NHWC) stores 4-D activations and convolution weights with the channels
// innermost, the layout cuDNN's fastest convolutions use; the values are the same.
#pragma once

#include <c10/core/DeviceType.h>
#include <c10/core/ScalarType.h>
#include <torch/types.h>

#include <string>
#include <vector>

namespace unidiff::models {

class Network;

/// "fp32" or "bf16"; anything else throws InputError naming the flag.
void validate_precision(const std::string& precision);

/// RAII: autocast to bfloat16 on `device` while alive when `enabled`; restores the previous
/// autocast state (nested scopes allowed) and clears the cast cache when the outermost ends.
class AutocastScope {
 public:
  AutocastScope(c10::DeviceType device, bool enabled);
  AutocastScope(c10::DeviceType device, const std::string& precision)
      : AutocastScope(device, precision == "bf16") {}
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  c10::DeviceType device_;
  bool enabled_;
  bool was_enabled_ = false;
  c10::ScalarType was_dtype_ = c10::ScalarType::Float;
};

/// Converts the network's 4-D parameters (convolution weights) to channels-last in place
/// (or back to contiguous), keeping their values. Call before the optimizer sees them.
void set_channels_last(Network& net, bool channels_last);

/// `x` in the matching layout: channels-last for 4-D inputs when asked, unchanged otherwise.
torch::Tensor to_layout(const torch::Tensor& x, bool channels_last);

}  // namespace unidiff::models
