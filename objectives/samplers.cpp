#include "objectives/samplers.h"

#include "core/error.h"

namespace unidiff::objectives {

Spacing parse_spacing(const std::string& name) {
  if (name == "leading") return Spacing::kLeading;
  if (name == "trailing") return Spacing::kTrailing;
  UD_FAIL_INPUT("unknown timestep spacing '", name, "' (valid: leading, trailing)");
}

std::vector<int64_t> timestep_subsequence(int64_t num_steps, int64_t k, Spacing spacing) {
  UD_CHECK_INPUT(k >= 1 && k <= num_steps, "sampling steps must be in [1, T = ", num_steps,
                 "], got ", k);
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

torch::Tensor ddpm_step(const DdpmSchedule& schedule, const torch::Tensor& x_t,
                        const torch::Tensor& eps, int64_t t, int64_t prev, const torch::Tensor& z,
                        bool clip_x0) {
  const DdpmSchedule::Step st = schedule.step(t, prev);
  torch::Tensor x0 = (x_t - std::sqrt(1 - st.abar_t) * eps) / std::sqrt(st.abar_t);
  if (clip_x0) x0 = x0.clamp(-1, 1);
  torch::Tensor x = st.coef_x0 * x0 + st.coef_xt * x_t;  // posterior mean (8)
  if (prev >= 0) x = x + std::sqrt(st.var) * z.to(x.device());
  return x;
}

torch::Tensor ddim_step(const DdpmSchedule& schedule, const torch::Tensor& x_t,
                        const torch::Tensor& eps_in, int64_t t, int64_t prev, double eta,
                        const torch::Tensor& z, bool clip_x0) {
  const DdpmSchedule::Step st = schedule.step(t, prev);
  const double abar_t = st.abar_t, abar_prev = st.abar_prev;
  torch::Tensor eps = eps_in;
  torch::Tensor x0 = (x_t - std::sqrt(1 - abar_t) * eps) / std::sqrt(abar_t);
  if (clip_x0) {
    x0 = x0.clamp(-1, 1);
    eps = (x_t - std::sqrt(abar_t) * x0) / std::sqrt(1 - abar_t);
  }
  // sigma_i(eta) of (14).
  const double sigma = eta * std::sqrt((1 - abar_prev) / (1 - abar_t)) *
                       std::sqrt(std::max(0.0, 1 - abar_t / abar_prev));
  torch::Tensor x =
      std::sqrt(abar_prev) * x0 + std::sqrt(std::max(0.0, 1 - abar_prev - sigma * sigma)) * eps;
  if (sigma > 0 && prev >= 0) x = x + sigma * z.to(x.device());
  return x;
}

torch::Tensor sample_ddpm(const EpsFn& eps_fn, const DdpmSchedule& schedule, torch::Tensor x,
                          const DdpmSamplerOptions& options, const NoiseFn& noise) {
  torch::NoGradGuard no_grad;
  const int64_t k = options.steps > 0 ? options.steps : schedule.num_steps;
  const std::vector<int64_t> ts = timestep_subsequence(schedule.num_steps, k, options.spacing);
  for (size_t i = 0; i < ts.size(); ++i) {
    const int64_t prev = i + 1 < ts.size() ? ts[i + 1] : -1;
    const torch::Tensor z = prev >= 0 ? noise(static_cast<int64_t>(i)) : torch::Tensor();
    x = ddpm_step(schedule, x, eps_fn(x, full_t(ts[i], x)), ts[i], prev, z, options.clip_x0);
  }
  return x;
}

torch::Tensor sample_ddim(const EpsFn& eps_fn, const DdpmSchedule& schedule, torch::Tensor x,
                          const DdpmSamplerOptions& options, double eta, const NoiseFn& noise) {
  torch::NoGradGuard no_grad;
  UD_CHECK_INPUT(eta >= 0, "DDIM eta must be >= 0, got ", eta);
  const int64_t k = options.steps > 0 ? options.steps : schedule.num_steps;
  const std::vector<int64_t> ts = timestep_subsequence(schedule.num_steps, k, options.spacing);
  for (size_t i = 0; i < ts.size(); ++i) {
    const int64_t prev = i + 1 < ts.size() ? ts[i + 1] : -1;
    const torch::Tensor z = eta > 0 && prev >= 0 ? noise(static_cast<int64_t>(i)) : torch::Tensor();
    x = ddim_step(schedule, x, eps_fn(x, full_t(ts[i], x)), ts[i], prev, eta, z, options.clip_x0);
  }
  return x;
}

}  // namespace unidiff::objectives
