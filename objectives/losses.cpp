#include "objectives/losses.h"

#include "core/error.h"

namespace unidiff::objectives {

LossOutput eps_mse_loss(const torch::Tensor& eps_pred, const torch::Tensor& eps) {
  UD_ASSERT(eps_pred.sizes() == eps.sizes(), "prediction ", eps_pred.sizes(), " vs target ",
            eps.sizes());
  LossOutput out;
  out.loss = (eps_pred.to(torch::kFloat32) - eps.to(torch::kFloat32)).pow(2).mean();
  out.stats["mse"] = out.loss.detach();
  return out;
}

}  // namespace unidiff::objectives
