// objectives/distill/consistency_distillation.h.
#include "objectives/distill/consistency_distillation.h"

#include "core/error.h"
#include "objectives/parameterization.h"
#include "objectives/pretrain/consistency.h"
#include "objectives/sampling/ddim.h"
#include "objectives/sampling/ddpm.h"

namespace unidiff::objectives {

std::vector<int64_t> cd_grid(int64_t num_steps, int64_t intervals) {
  UD_CHECK_INPUT(intervals >= 1 && intervals <= num_steps, "consistency distillation needs 1 <= intervals <= T = ",
                 num_steps, ", got ", intervals);
  std::vector<int64_t> g = timestep_subsequence(num_steps, intervals, Spacing::kTrailing);
  g.push_back(-1);
  return g;
}

torch::Tensor lcm_consistency(const torch::Tensor& x, const torch::Tensor& x0_hat, const torch::Tensor& t) {
  const torch::Tensor t64 = t.to(x.device(), torch::kFloat64);
  const Boundary b = lcm_boundary(t64.clamp_min(0));
  const torch::Tensor clean = t64 < 0;
  const torch::Tensor skip = torch::where(clean, torch::ones_like(t64), b.c_skip);
  const torch::Tensor out = torch::where(clean, torch::zeros_like(t64), b.c_out);
  return per_sample(skip, x) * x + per_sample(out, x) * x0_hat;
}

torch::Tensor cd_teacher_solve(const EpsAt& teacher, const Schedule& schedule, const torch::Tensor& grid,
                               torch::Tensor x, const torch::Tensor& i, int64_t k) {
  const torch::Tensor g = grid.to(x.device(), torch::kFloat32);
  for (int64_t j = 0; j < k; ++j) {
    const torch::Tensor t = g.index_select(0, i + j), s = g.index_select(0, i + j + 1);
    // Every sample's t is a grid time >= 0 (i + j < N): the teacher is never asked at clean data.
    x = ddim_gaussian(schedule, x, teacher(x, t), t, s, /*eta=*/0.0).mean;
  }
  return x;
}

torch::Tensor cd_distance(const torch::Tensor& a, const torch::Tensor& b, const std::string& kind, double c) {
  UD_ASSERT(a.sizes() == b.sizes(), "consistency distance of ", a.sizes(), " and ", b.sizes());
  if (kind == "l2") return (a - b).pow(2).reshape({a.size(0), -1}).mean(1);
  UD_CHECK_INPUT(kind == "huber", "unknown consistency distance '", kind, "' (valid: l2, huber)");
  UD_CHECK_INPUT(c > 0, "the pseudo-Huber constant must be positive, got ", c);
  return pseudo_huber(a, b, c);
}

}  // namespace unidiff::objectives
