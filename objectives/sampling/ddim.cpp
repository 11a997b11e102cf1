// objectives/sampling/ddim.h.
#include "objectives/sampling/ddim.h"

#include <cmath>
#include <numbers>

#include "core/error.h"

namespace unidiff::objectives {

double ddim_noise_std(double eta, double alpha_t, double sigma_t, double alpha_s, double sigma_s) {
  if (eta <= 0 || sigma_s <= 0 || alpha_s <= 0) return 0.0;
  const double ratio = (alpha_t * sigma_s) / (alpha_s * sigma_t);
  return eta * sigma_s * std::sqrt(std::max(0.0, 1 - ratio * ratio));
}

DdimStep ddim_step_distribution(const torch::Tensor& x_t, const torch::Tensor& x0, double alpha_t, double sigma_t,
                                double alpha_s, double sigma_s, double eta) {
  DdimStep out;
  if (sigma_s <= 0) {  // to clean data
    out.mean = alpha_s == 1 ? x0 : alpha_s * x0;
    return out;
  }
  const torch::Tensor eps = (x_t - alpha_t * x0) / sigma_t;
  out.std = ddim_noise_std(eta, alpha_t, sigma_t, alpha_s, sigma_s);
  const double keep = out.std > 0 ? std::sqrt(std::max(0.0, sigma_s * sigma_s - out.std * out.std)) : sigma_s;
  out.mean = alpha_s * x0 + keep * eps;
  return out;
}

torch::Tensor ddim_step_deterministic(const torch::Tensor& x_t, const torch::Tensor& x0, const torch::Tensor& alpha_t,
                                      const torch::Tensor& sigma_t, const torch::Tensor& alpha_s,
                                      const torch::Tensor& sigma_s) {
  const torch::Tensor eps = (x_t - alpha_t * x0) / sigma_t;
  return alpha_s * x0 + sigma_s * eps;
}

namespace {

/// The step's noise std of the discrete tables: eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev).
double table_std(const DdpmSchedule::Step& st, double eta) {
  return eta * std::sqrt((1 - st.abar_prev) / (1 - st.abar_t)) * std::sqrt(std::max(0.0, 1 - st.abar_t / st.abar_prev));
}

/// Appends a step to the trajectory (the state before it is already there).
void record(Trajectory* tr, double t, double s, const DdimStep& step, const torch::Tensor& x_next) {
  if (tr == nullptr) return;
  tr->t.push_back(t);
  tr->t_next.push_back(s);
  tr->mean.push_back(step.mean);
  tr->std.push_back(step.std);
  tr->log_prob.push_back(step.std > 0 ? step_log_prob(x_next, step.mean, step.std) : torch::Tensor());
  tr->x.push_back(x_next);
}

}  // namespace

torch::Tensor sample_ddim_times(const DenoiseFn& denoise, const Schedule& sch, torch::Tensor x,
                                const std::vector<double>& times, double eta, bool clip_x0, const NoiseFn& noise,
                                Trajectory* trajectory) {
  torch::NoGradGuard no_grad;
  UD_CHECK_INPUT(eta >= 0, "DDIM eta must be >= 0, got ", eta);
  UD_ASSERT(!times.empty(), "DDIM needs at least one time");
  if (trajectory != nullptr) {
    trajectory->clear();
    trajectory->x.push_back(x);
  }
  for (size_t i = 0; i < times.size(); ++i) {
    const double t = times[i];
    const double a_t = sch.alpha(t), s_t = sch.sigma(t);
    if (s_t <= 0) break;  // already clean data (a grid ending at sigma = 0)
    const bool last = i + 1 == times.size();
    const double s = last ? -1.0 : times[i + 1];
    const double a_s = last ? 1.0 : sch.alpha(s), s_s = last ? 0.0 : sch.sigma(s);
    torch::Tensor x0 = denoise(x, t);
    if (clip_x0) x0 = x0.clamp(-1, 1);
    const DdimStep step = ddim_step_distribution(x, x0, a_t, s_t, a_s, s_s, eta);
    torch::Tensor next = step.mean;
    if (step.std > 0) next = next + step.std * noise(static_cast<int64_t>(i)).to(x.device(), x.scalar_type());
    record(trajectory, t, s, step, next);
    x = next;
  }
  return x;
}

torch::Tensor ddim_step(const DdpmSchedule& schedule, const torch::Tensor& x_t, const torch::Tensor& eps_in, int64_t t,
                        int64_t prev, double eta, const torch::Tensor& z, bool clip_x0) {
  const DdpmSchedule::Step st = schedule.step(t, prev);
  const double a_t = std::sqrt(st.abar_t), s_t = std::sqrt(1 - st.abar_t);
  torch::Tensor x0 = (x_t - s_t * eps_in) / a_t;
  if (clip_x0) x0 = x0.clamp(-1, 1);
  const double a_s = std::sqrt(st.abar_prev);
  // The same step as sample_ddim_times, with the tables' own form of c.
  const double c = prev >= 0 ? table_std(st, eta) : 0.0;
  const torch::Tensor eps = clip_x0 ? (x_t - a_t * x0) / s_t : eps_in;
  torch::Tensor x = a_s * x0 + std::sqrt(std::max(0.0, 1 - st.abar_prev - c * c)) * eps;
  if (c > 0) x = x + c * z.to(x.device());
  return x;
}

std::pair<torch::Tensor, double> ddim_step_distribution(const DdpmSchedule& schedule, const torch::Tensor& x_t,
                                                        const torch::Tensor& eps, int64_t t, int64_t prev, double eta) {
  const DdpmSchedule::Step st = schedule.step(t, prev);
  const double c = table_std(st, eta);
  const torch::Tensor x0 = (x_t - std::sqrt(1 - st.abar_t) * eps) / std::sqrt(st.abar_t);
  const torch::Tensor mean = std::sqrt(st.abar_prev) * x0 + std::sqrt(std::max(0.0, 1 - st.abar_prev - c * c)) * eps;
  return {mean, c};
}

torch::Tensor sample_ddim(const EpsFn& eps_fn, const DdpmSchedule& schedule, torch::Tensor x,
                          const DdpmSamplerOptions& options, double eta, const NoiseFn& noise, Trajectory* trajectory) {
  const int64_t k = options.steps > 0 ? options.steps : schedule.num_steps;
  std::vector<double> times;
  if (options.spacing == Spacing::kUniform) {
    UD_CHECK_INPUT(k >= 1, "sampling steps must be at least 1, got ", k);
    for (int64_t j = k; j >= 1; --j) {
      times.push_back(static_cast<double>(j) / static_cast<double>(k) * static_cast<double>(schedule.num_steps - 1));
    }
  } else {
    for (int64_t t : timestep_subsequence(schedule.num_steps, k, options.spacing)) times.push_back(static_cast<double>(t));
  }
  const Schedule sch = Schedule::from_ddpm(schedule);
  // x0 from the network's eps: integer code indices as int64 (the tables' own values there),
  // times between them as float64 on the interpolated schedule.
  const DenoiseFn denoise = [&](const torch::Tensor& xt, double t) {
    const bool integer = t == std::floor(t);
    const torch::Tensor tt = integer
        ? torch::full({xt.size(0)}, static_cast<int64_t>(t), torch::dtype(torch::kInt64).device(xt.device()))
        : torch::full({xt.size(0)}, t, torch::dtype(torch::kFloat64).device(xt.device()));
    const double abar = integer ? schedule.step(static_cast<int64_t>(t), -1).abar_t : sch.alpha(t) * sch.alpha(t);
    return (xt - std::sqrt(1 - abar) * eps_fn(xt, tt)) / std::sqrt(abar);
  };
  return sample_ddim_times(denoise, sch, std::move(x), times, eta, options.clip_x0, noise, trajectory);
}

torch::Tensor sample_ddim_any(const DenoiseFn& denoise, const Schedule& sch, torch::Tensor x, int64_t steps, double eta,
                              const NoiseFn& noise, Trajectory* trajectory) {
  UD_CHECK_INPUT(eta >= 0 && eta <= 1, "--eta must be in [0, 1], got ", eta);
  return sample_ddim_times(denoise, sch, std::move(x), sch.time_grid(steps), eta, /*clip_x0=*/false, noise, trajectory);
}

torch::Tensor step_log_prob(const torch::Tensor& x_prev, const torch::Tensor& mean, double std) {
  UD_ASSERT(std > 0, "step_log_prob needs std > 0");
  const int64_t b = x_prev.size(0);
  const double d = static_cast<double>(x_prev.numel() / std::max<int64_t>(1, b));
  const torch::Tensor sq = (x_prev - mean).to(torch::kFloat64).reshape({b, -1}).pow(2).sum(1);
  return -sq / (2 * std * std) - d * std::log(std) - 0.5 * d * std::log(2 * std::numbers::pi);
}

DdimGaussian ddim_gaussian(const Schedule& schedule, const torch::Tensor& x_t, const torch::Tensor& eps,
                            const torch::Tensor& t, const torch::Tensor& s, double eta) {
  const torch::Tensor t64 = t.to(x_t.device(), torch::kFloat64), s64 = s.to(x_t.device(), torch::kFloat64);
  const Coeffs ct = schedule.at(t64);
  const Coeffs cs = schedule.at(s64.clamp_min(0));
  const torch::Tensor clean = s64 < 0;
  const torch::Tensor a_t = ct.alpha, g_t = ct.sigma;
  const torch::Tensor a_s = torch::where(clean, torch::ones_like(s64), cs.alpha);
  const torch::Tensor g_s = torch::where(clean, torch::zeros_like(s64), cs.sigma);
  // c = eta sigma_s sqrt(1 - (alpha_t sigma_s / (alpha_s sigma_t))^2) (ddim.h), 0 to clean data.
  const torch::Tensor ratio = (a_t * g_s) / (a_s * g_t);
  const torch::Tensor c = eta * g_s * (1 - ratio * ratio).clamp_min(0).sqrt();
  const torch::Tensor x0 = (x_t - per_sample(g_t, x_t) * eps) / per_sample(a_t, x_t);
  const torch::Tensor keep = (g_s * g_s - c * c).clamp_min(0).sqrt();
  DdimGaussian out;
  out.mean = per_sample(a_s, x_t) * x0 + per_sample(keep, x_t) * eps;
  out.std = c;
  return out;
}

}  // namespace unidiff::objectives
