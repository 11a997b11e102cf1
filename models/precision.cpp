// models/precision.h.
#include "models/precision.h"

#include <ATen/autocast_mode.h>

#include "core/error.h"
#include "models/network.h"

namespace unidiff::models {

void validate_precision(const std::string& precision) {
  UD_CHECK_INPUT(precision == "fp32" || precision == "bf16", "--precision must be fp32 or bf16, got '",
                 precision, "'");
}

AutocastScope::AutocastScope(c10::DeviceType device, bool enabled) : device_(device), enabled_(enabled) {
  if (!enabled_) return;
  was_enabled_ = at::autocast::is_autocast_enabled(device_);
  was_dtype_ = at::autocast::get_autocast_dtype(device_);
  at::autocast::set_autocast_dtype(device_, at::kBFloat16);
  at::autocast::set_autocast_enabled(device_, true);
  at::autocast::increment_nesting();
}

AutocastScope::~AutocastScope() {
  if (!enabled_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  at::autocast::set_autocast_enabled(device_, was_enabled_);
  at::autocast::set_autocast_dtype(device_, was_dtype_);
}

void set_channels_last(Network& net, bool channels_last) {
  torch::NoGradGuard no_grad;
  const auto format = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  for (auto& p : net.parameters()) {
    if (p.dim() != 4) continue;
    // set_data keeps the Parameter object (and so every reference to it) while its storage moves.
    p.set_data(p.contiguous(format));
  }
}

torch::Tensor to_layout(const torch::Tensor& x, bool channels_last) {
  if (!channels_last || x.dim() != 4) return x;
  return x.contiguous(at::MemoryFormat::ChannelsLast);
}

}  // namespace unidiff::models
