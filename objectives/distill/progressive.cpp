// objectives/distill/progressive.h.
#include "objectives/distill/progressive.h"

#include "core/error.h"
#include "objectives/sampling/ddim.h"

namespace unidiff::objectives {
PdPoint pd_point(const Schedule& schedule, const torch::Tensor& s) {
  UD_ASSERT(schedule.family == ScheduleFamily::kDdpm, "progressive distillation runs on a DDPM schedule");
  const torch::Tensor s64 = s.to(torch::kFloat64);  // on s's device: nothing waits for the host
  const torch::Tensor t = s64 * static_cast<double>(schedule.ddpm.num_steps - 1);
  const Coeffs c = schedule.at(t);
  const torch::Tensor clean = s64 <= 0;
  PdPoint p;
  p.alpha = torch::where(clean, torch::ones_like(s64), c.alpha);
  p.sigma = torch::where(clean, torch::zeros_like(s64), c.sigma);
  p.t = t.to(torch::kFloat32);
  return p;
}

torch::Tensor pd_ddim_step(const torch::Tensor& z, const torch::Tensor& x0, const PdPoint& from,
                           const PdPoint& to) {
  return ddim_step_deterministic(z, x0, per_sample(from.alpha, z), per_sample(from.sigma, z), per_sample(to.alpha, z),
                                 per_sample(to.sigma, z));
}

PdLoss progressive_distillation_loss(const X0Fn& teacher, const X0Fn& student,
                                     const Schedule& schedule, const torch::Tensor& x0,
                                     const torch::Tensor& eps, const torch::Tensor& s, int64_t n) {
  UD_ASSERT(n >= 1, "student steps ", n);
  const torch::Tensor s64 = s.to(x0.device(), torch::kFloat64);
  const PdPoint p = pd_point(schedule, s64);
  const PdPoint mid = pd_point(schedule, s64 - 0.5 / static_cast<double>(n));
  const PdPoint end = pd_point(schedule, s64 - 1.0 / static_cast<double>(n));
  const torch::Tensor z = per_sample(p.alpha, x0) * x0 + per_sample(p.sigma, x0) * eps;
  const torch::Device dev = x0.device();
  PdLoss out;
  {
    torch::NoGradGuard no_grad;
    const torch::Tensor z_mid = pd_ddim_step(z, teacher(z, p.t.to(dev)), p, mid);
    const torch::Tensor z_end = pd_ddim_step(z_mid, teacher(z_mid, mid.t.to(dev)), mid, end);
    // x_tilde = (z'' - r z) / (alpha'' - r alpha), r = sigma'' / sigma (sigma > 0: s > 0).
    const torch::Tensor r = end.sigma / p.sigma;
    out.x_target = (z_end - per_sample(r, z) * z) / per_sample(end.alpha - r * p.alpha, z);
  }
  const torch::Tensor w = torch::clamp_min(p.alpha.pow(2) / p.sigma.pow(2), 1.0);
  const torch::Tensor err = (student(z, p.t.to(dev)) - out.x_target).pow(2);
  out.loss = (per_sample(w, err) * err).mean();
  return out;
}

X0Fn guided_x0(X0Fn cond, X0Fn uncond, torch::Tensor w) {
  return [cond = std::move(cond), uncond = std::move(uncond), w = std::move(w)](const torch::Tensor& z,
                                                                                 const torch::Tensor& t) {
    const torch::Tensor u = uncond(z, t);
    return u + per_sample(w.to(u.device(), u.scalar_type()), u) * (cond(z, t) - u);
  };
}

PdLoss guidance_distillation_loss(const X0Fn& guided_teacher, const X0Fn& student, const Schedule& schedule,
                                  const torch::Tensor& x0, const torch::Tensor& eps, const torch::Tensor& s) {
  const torch::Tensor s64 = s.to(x0.device(), torch::kFloat64);
  const PdPoint p = pd_point(schedule, s64);
  const torch::Tensor z = per_sample(p.alpha, x0) * x0 + per_sample(p.sigma, x0) * eps;
  const torch::Tensor t = p.t.to(x0.device());
  PdLoss out;
  {
    torch::NoGradGuard no_grad;
    out.x_target = guided_teacher(z, t);
  }
  const torch::Tensor w = torch::clamp_min(p.alpha.pow(2) / p.sigma.pow(2), 1.0);
  const torch::Tensor err = (student(z, t) - out.x_target).pow(2);
  out.loss = (per_sample(w, err) * err).mean();
  return out;
}

std::vector<double> pd_times(const Schedule& schedule, int64_t n) {
  UD_ASSERT(n >= 1, "sampling steps ", n);
  std::vector<double> times;
  for (int64_t k = n; k >= 1; --k) {
    times.push_back(static_cast<double>(k) / static_cast<double>(n) * static_cast<double>(schedule.ddpm.num_steps - 1));
  }
  return times;
}

torch::Tensor pd_sample(const X0Fn& model, const Schedule& schedule, const torch::Tensor& x_T, int64_t n) {
  const DenoiseFn denoise = [&](const torch::Tensor& z, double t) {
    return model(z, torch::full({z.size(0)}, t, torch::dtype(torch::kFloat32).device(z.device())));
  };
  return sample_ddim_times(denoise, schedule, x_T, pd_times(schedule, n), 0.0, false, {});
}

}  // namespace unidiff::objectives
