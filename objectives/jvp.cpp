#include "objectives/jvp.h"

#include <ATen/ops/_make_dual.h>
#include <ATen/ops/_unpack_dual.h>
#include <torch/csrc/autograd/forward_grad.h>
#include <torch/csrc/autograd/grad_mode.h>

#include "core/error.h"

namespace unidiff::objectives {
namespace {

/// One forward-AD level for the lifetime of the object (released on any exit path).
class DualLevel {
 public:
  DualLevel() : idx_(torch::autograd::ForwardADLevel::get_next_idx()) {}
  ~DualLevel() { torch::autograd::ForwardADLevel::release_idx(idx_); }
  DualLevel(const DualLevel&) = delete;
  DualLevel& operator=(const DualLevel&) = delete;
  int64_t idx() const { return static_cast<int64_t>(idx_); }

 private:
  uint64_t idx_;
};

}  // namespace

std::pair<torch::Tensor, torch::Tensor> jvp_forward_ad(const TensorFn& f,
                                                       const std::vector<torch::Tensor>& x,
                                                       const std::vector<torch::Tensor>& v) {
  UD_ASSERT(x.size() == v.size(), "jvp: ", x.size(), " inputs but ", v.size(), " tangents");
  torch::NoGradGuard no_grad;
  DualLevel level;
  std::vector<torch::Tensor> duals;
  duals.reserve(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    UD_ASSERT(x[i].sizes() == v[i].sizes(), "jvp: input ", i, " is ", x[i].sizes(),
              " but its tangent is ", v[i].sizes());
    duals.push_back(at::_make_dual(x[i], v[i].to(x[i].dtype()), level.idx()));
  }
  const torch::Tensor out = f(duals);
  auto [primal, tangent] = at::_unpack_dual(out, level.idx());
  // Outputs that do not depend on the inputs carry no tangent: their derivative is zero.
  if (!tangent.defined()) tangent = torch::zeros_like(primal);
  // Detach from the level before it is released.
  return {primal.clone(), tangent.clone()};
}

std::pair<torch::Tensor, torch::Tensor> jvp_finite_difference(const TensorFn& f,
                                                              const std::vector<torch::Tensor>& x,
                                                              const std::vector<torch::Tensor>& v,
                                                              double h) {
  UD_ASSERT(x.size() == v.size(), "jvp: ", x.size(), " inputs but ", v.size(), " tangents");
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> plus, minus;
  for (size_t i = 0; i < x.size(); ++i) {
    plus.push_back(x[i] + h * v[i]);
    minus.push_back(x[i] - h * v[i]);
  }
  return {f(x), (f(plus) - f(minus)) / (2 * h)};
}

}  // namespace unidiff::objectives
