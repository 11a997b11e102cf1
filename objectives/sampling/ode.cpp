#include "objectives/sampling/ode.h"

#include <cmath>
#include <numbers>

#include "core/error.h"

namespace unidiff::objectives {
namespace {

struct Scalars {
  double a, s, da, ds;
};

Scalars scalars(const Schedule& sch, double t) {
  const Coeffs c = sch.at(torch::tensor({t}, torch::kFloat64));
  return {c.alpha.item<double>(), c.sigma.item<double>(), c.d_alpha.item<double>(),
          c.d_sigma.item<double>()};
}

/// dx/dt of the probability-flow ODE at (x, t).
torch::Tensor drift(const DenoiseFn& denoise, const Schedule& sch, const torch::Tensor& x, double t) {
  const Scalars c = scalars(sch, t);
  const torch::Tensor x0 = denoise(x, t);
  const torch::Tensor eps = (x - c.a * x0) / c.s;
  return c.da * x0 + c.ds * eps;
}

torch::Tensor integrate(const DenoiseFn& denoise, const Schedule& sch, torch::Tensor x,
                        const std::vector<double>& ts, OdeMethod method) {
  for (size_t i = 0; i + 1 < ts.size(); ++i) {
    const double t = ts[i], t_next = ts[i + 1], h = t_next - t;
    const torch::Tensor d = drift(denoise, sch, x, t);
    torch::Tensor x_next = x + h * d;
    if (method == OdeMethod::kHeun && sch.sigma(t_next) > 0) {
      x_next = x + h * 0.5 * (d + drift(denoise, sch, x_next, t_next));
    }
    x = x_next;
  }
  return x;
}

}  // namespace

torch::Tensor sample_ode(const DenoiseFn& denoise, const Schedule& sch, torch::Tensor x,
                         int64_t steps, OdeMethod method) {
  torch::NoGradGuard no_grad;
  const std::vector<double> ts = sch.time_grid(steps);
  x = integrate(denoise, sch, x, ts, method);
  if (sch.sigma(sch.t_min) > 0) x = denoise(x, sch.t_min);
  return x;
}

torch::Tensor sample_smld(const DenoiseFn& denoise, const Schedule& sch, torch::Tensor x,
                          int64_t levels, int64_t inner, double step_eps, const NoiseFn& noise) {
  torch::NoGradGuard no_grad;
  UD_CHECK_INPUT(sch.family == ScheduleFamily::kVe, "sampler 'smld' takes schedules: ve (got '",
                 sch.name, "')");
  UD_CHECK_INPUT(levels >= 2 && inner >= 1 && step_eps > 0, "smld needs levels >= 2, inner >= 1, ",
                 "step size > 0");
  const double lo = sch.t_min, hi = sch.t_max;
  int64_t k = 0;
  double sigma_last = lo;
  for (int64_t i = 0; i < levels; ++i) {
    const double sigma = hi * std::pow(lo / hi, static_cast<double>(i) / static_cast<double>(levels - 1));
    const double a = step_eps * sigma * sigma / (lo * lo);
    for (int64_t j = 0; j < inner; ++j) {
      const torch::Tensor score = (denoise(x, sigma) - x) / (sigma * sigma);
      x = x + (a / 2) * score + std::sqrt(a) * noise(k++).to(x.device(), x.scalar_type());
    }
    sigma_last = sigma;
  }
  return denoise(x, sigma_last);
}

torch::Tensor sample_multistep(const ConsistencyFn& f, const Schedule& sch, torch::Tensor x,
                               const std::vector<double>& times, const NoiseFn& noise) {
  torch::NoGradGuard no_grad;
  UD_ASSERT(!times.empty(), "multistep sampling needs at least one time");
  x = f(x, times[0]);
  for (size_t i = 1; i < times.size(); ++i) {
    const double tau = times[i];
    const torch::Tensor z = noise(static_cast<int64_t>(i - 1)).to(x.device(), x.scalar_type());
    if (sch.family == ScheduleFamily::kVe) {
      x = x + std::sqrt(std::max(0.0, tau * tau - sch.t_min * sch.t_min)) * z;
    } else {
      x = sch.alpha(tau) * x + sch.sigma(tau) * z;
    }
    x = f(x, tau);
  }
  return x;
}

ConsistencyFn ode_consistency(const DenoiseFn& denoise, const Schedule& sch, int64_t steps) {
  return [denoise, sch, steps](const torch::Tensor& x, double t) {
    torch::NoGradGuard no_grad;
    std::vector<double> ts;
    if (sch.family == ScheduleFamily::kVe) {
      Schedule part = sch;
      part.t_max = t;
      ts = part.time_grid(steps);
    } else {
      for (int64_t i = 0; i <= steps; ++i) {
        ts.push_back(t + (sch.t_min - t) * static_cast<double>(i) / static_cast<double>(steps));
      }
    }
    torch::Tensor y = integrate(denoise, sch, x, ts, OdeMethod::kHeun);
    if (sch.sigma(sch.t_min) > 0) y = denoise(y, sch.t_min);
    return y;
  };
}

torch::Tensor trigflow_step(const torch::Tensor& x_t, const torch::Tensor& F, double t, double s,
                            double sigma_d) {
  return std::cos(t - s) * x_t - std::sin(t - s) * sigma_d * F;
}


torch::Tensor ddpm_simple_step(const DdpmSchedule& schedule, const torch::Tensor& x_t,
                               const torch::Tensor& eps, int64_t t, int64_t prev,
                               const torch::Tensor& z) {
  const DdpmSchedule::Step st = schedule.step(t, prev);
  const double beta = st.beta;
  torch::Tensor x = (x_t - beta / std::sqrt(1 - st.abar_t) * eps) / std::sqrt(1 - beta);
  if (prev >= 0) x = x + std::sqrt(beta) * z.to(x.device(), x.scalar_type());
  return x;
}

torch::Tensor sample_instaflow(const EpsFn& w_fn, const Schedule& sch, torch::Tensor x,
                               const DdpmSamplerOptions& options, InstaflowVariant variant,
                               double eta, const NoiseFn& noise) {
  torch::NoGradGuard no_grad;
  UD_CHECK_INPUT(sch.family == ScheduleFamily::kDdpm, "sampler 'instaflow' takes schedules: ",
                 "ddpm-linear, ddpm-cosine, ddpm-scaled-linear (got '", sch.name, "')");
  const int64_t k = options.steps > 0 ? options.steps : sch.ddpm.num_steps;
  const std::vector<int64_t> ts = timestep_subsequence(sch.ddpm.num_steps, k, options.spacing);
  for (size_t i = 0; i < ts.size(); ++i) {
    const int64_t t = ts[i], prev = i + 1 < ts.size() ? ts[i + 1] : -1;
    const torch::Tensor tt = torch::full({x.size(0)}, t, torch::kInt64);
    const torch::Tensor w = w_fn(x, tt);
    const torch::Tensor eps =
        from_prediction(Prediction::kInstaflow, w, x, tt.to(torch::kFloat64), sch).eps;
    const bool stochastic = prev >= 0 && (variant != InstaflowVariant::kDdim || eta > 0);
    const torch::Tensor z = stochastic ? noise(static_cast<int64_t>(i)) : torch::Tensor();
    switch (variant) {
      case InstaflowVariant::kPosterior: x = ddpm_step(sch.ddpm, x, eps, t, prev, z, options.clip_x0); break;
      case InstaflowVariant::kSimple: x = ddpm_simple_step(sch.ddpm, x, eps, t, prev, z); break;
      case InstaflowVariant::kDdim: x = ddim_step(sch.ddpm, x, eps, t, prev, eta, z, options.clip_x0); break;
    }
  }
  return x;
}

torch::Tensor cfg_combine(const torch::Tensor& cond, const torch::Tensor& uncond, double w) {
  return uncond + w * (cond - uncond);
}

}  // namespace unidiff::objectives
