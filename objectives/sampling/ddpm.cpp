#include "objectives/sampling/ddpm.h"

#include "core/error.h"
#include "objectives/sampling/ddim.h"

namespace unidiff::objectives {

Spacing parse_spacing(const std::string& name) {
  if (name == "leading") return Spacing::kLeading;
  if (name == "trailing") return Spacing::kTrailing;
  if (name == "uniform") return Spacing::kUniform;
  UD_FAIL_INPUT("unknown timestep spacing '", name, "' (valid: leading, trailing, uniform)");
}

std::vector<int64_t> timestep_subsequence(int64_t num_steps, int64_t k, Spacing spacing) {
  UD_CHECK_INPUT(k >= 1 && k <= num_steps, "sampling steps must be in [1, T = ", num_steps,
                 "], got ", k);
  UD_CHECK_INPUT(spacing != Spacing::kUniform, "--spacing=uniform places steps between the code indices: ",
                 "only the ddim sampler takes it");
  std::vector<int64_t> ts(static_cast<size_t>(k));
  const double stride = static_cast<double>(num_steps) / static_cast<double>(k);
  for (int64_t i = 0; i < k; ++i) {
    ts[static_cast<size_t>(i)] =
        spacing == Spacing::kLeading
            ? static_cast<int64_t>(std::floor(static_cast<double>(i) * stride))
            : num_steps - 1 - static_cast<int64_t>(std::floor(static_cast<double>(k - 1 - i) * stride));
  }
  std::reverse(ts.begin(), ts.end());
  return ts;
}

namespace {

torch::Tensor full_t(int64_t t, const torch::Tensor& x) {
  return torch::full({x.size(0)}, t, torch::TensorOptions().dtype(torch::kInt64).device(x.device()));
}

}  // namespace

torch::Tensor ddpm_step_mean(const DdpmSchedule& schedule, const torch::Tensor& x_t, const torch::Tensor& eps,
                             int64_t t, int64_t prev, bool clip_x0) {
  const DdpmSchedule::Step st = schedule.step(t, prev);
  torch::Tensor x0 = (x_t - std::sqrt(1 - st.abar_t) * eps) / std::sqrt(st.abar_t);
  if (clip_x0) x0 = x0.clamp(-1, 1);
  return st.coef_x0 * x0 + st.coef_xt * x_t;  // posterior mean (8)
}

torch::Tensor ddpm_step(const DdpmSchedule& schedule, const torch::Tensor& x_t,
                        const torch::Tensor& eps, int64_t t, int64_t prev, const torch::Tensor& z,
                        bool clip_x0) {
  torch::Tensor x = ddpm_step_mean(schedule, x_t, eps, t, prev, clip_x0);
  if (prev >= 0) x = x + std::sqrt(schedule.step(t, prev).var) * z.to(x.device());
  return x;
}

torch::Tensor sample_ddpm(const EpsFn& eps_fn, const DdpmSchedule& schedule, torch::Tensor x,
                          const DdpmSamplerOptions& options, const NoiseFn& noise, Trajectory* trajectory) {
  torch::NoGradGuard no_grad;
  const int64_t k = options.steps > 0 ? options.steps : schedule.num_steps;
  const std::vector<int64_t> ts = timestep_subsequence(schedule.num_steps, k, options.spacing);
  if (trajectory != nullptr) {
    trajectory->clear();
    trajectory->x.push_back(x);
  }
  for (size_t i = 0; i < ts.size(); ++i) {
    const int64_t prev = i + 1 < ts.size() ? ts[i + 1] : -1;
    const torch::Tensor z = prev >= 0 ? noise(static_cast<int64_t>(i)) : torch::Tensor();
    const torch::Tensor eps = eps_fn(x, full_t(ts[i], x));
    const torch::Tensor mean = ddpm_step_mean(schedule, x, eps, ts[i], prev, options.clip_x0);
    const double std = prev >= 0 ? std::sqrt(schedule.step(ts[i], prev).var) : 0.0;
    const torch::Tensor next = prev >= 0 ? mean + std * z.to(mean.device()) : mean;
    if (trajectory != nullptr) {
      // The step's Gaussian: the posterior mean (8) and std sqrt(beta_tilde) (0 at the last step).
      trajectory->t.push_back(static_cast<double>(ts[i]));
      trajectory->t_next.push_back(static_cast<double>(prev));
      trajectory->mean.push_back(mean);
      trajectory->std.push_back(std);
      trajectory->log_prob.push_back(std > 0 ? step_log_prob(next, mean, std) : torch::Tensor());
      trajectory->x.push_back(next);
    }
    x = next;
  }
  return x;
}

}  // namespace unidiff::objectives
