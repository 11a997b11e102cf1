// Jacobian-vector products of a tensor function, for continuous-time consistency training (sCM):
// forward-mode automatic differentiation (LibTorch's dual tensors), with central finite
// differences as a cross-check and fallback.
#pragma once

#include <torch/types.h>

#include <functional>
#include <utility>
#include <vector>

namespace unidiff::objectives {

using TensorFn = std::function<torch::Tensor(const std::vector<torch::Tensor>&)>;

/// (f(x), J_f(x) v) by forward-mode AD: each input x_i is made a dual tensor with tangent v_i,
/// f is evaluated once, and the output's tangent is unpacked. Parameters inside f get no
/// tangent (they are constants of the product). Runs under no_grad: no backward graph is kept.
std::pair<torch::Tensor, torch::Tensor> jvp_forward_ad(const TensorFn& f,
                                                       const std::vector<torch::Tensor>& x,
                                                       const std::vector<torch::Tensor>& v);

/// (f(x), (f(x + h v) - f(x - h v)) / (2 h)): three evaluations, error O(h^2) plus rounding
/// O(eps / h); computed in the inputs' dtype.
std::pair<torch::Tensor, torch::Tensor> jvp_finite_difference(const TensorFn& f,
                                                              const std::vector<torch::Tensor>& x,
                                                              const std::vector<torch::Tensor>& v,
                                                              double h = 1e-3);

}  // namespace unidiff::objectives
