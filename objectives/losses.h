// Pre-training losses over plain tensors (FORMULAS.md section 3). A loss returns the scalar to
// minimise (float32, mean over elements) and named diagnostics for logging.
#pragma once

#include <torch/types.h>

#include <map>
#include <string>

namespace unidiff::objectives {

struct LossOutput {
  torch::Tensor loss;                          ///< scalar, differentiable
  std::map<std::string, torch::Tensor> stats;  ///< detached scalars
};

/// DDPM L_simple: mean || eps - eps_theta ||^2 over every element of the batch.
LossOutput eps_mse_loss(const torch::Tensor& eps_pred, const torch::Tensor& eps);

}  // namespace unidiff::objectives
