#include "objectives/parameterization.h"

#include <cmath>

#include "core/error.h"

namespace unidiff::objectives {
namespace {

struct Names {
  Prediction p;
  const char* name;
};
constexpr Names kNames[] = {{Prediction::kEps, "eps"},
                            {Prediction::kX0, "x0"},
                            {Prediction::kV, "v"},
                            {Prediction::kScore, "score"},
                            {Prediction::kVelocity, "velocity"},
                            {Prediction::kRfVelocity, "rf-velocity"},
                            {Prediction::kInstaflow, "instaflow"},
                            {Prediction::kTrigflowF, "trigflow-F"}};

/// A per-sample coefficient [B] (or scalar) shaped to broadcast against x [B, ...].
torch::Tensor like(const torch::Tensor& c, const torch::Tensor& x) {
  torch::Tensor out = c.to(x.device(), x.scalar_type());
  if (out.dim() == 0) return out;
  std::vector<int64_t> shape(static_cast<size_t>(x.dim()), 1);
  shape[0] = out.numel();
  return out.reshape(shape);
}

struct Local {
  torch::Tensor a, s, da, ds, t;
};

Local local(const torch::Tensor& t, const Schedule& sch, const torch::Tensor& x) {
  const Coeffs c = sch.at(t);
  return {like(c.alpha, x), like(c.sigma, x), like(c.d_alpha, x), like(c.d_sigma, x),
          like(t.to(torch::kFloat64), x)};
}

void require_vp(Prediction p, const Schedule& sch) {
  UD_CHECK_INPUT(sch.is_variance_preserving(), "prediction '", to_string(p),
                 "' needs a variance-preserving schedule (ddpm-*), not '", sch.name, "'");
}

void require_trigflow(const Schedule& sch) {
  UD_CHECK_INPUT(sch.family == ScheduleFamily::kTrigflow,
                 "prediction 'trigflow-F' needs the trigflow schedule, not '", sch.name, "'");
}

}  // namespace

std::string to_string(Prediction p) {
  for (const auto& n : kNames) {
    if (n.p == p) return n.name;
  }
  return "?";
}

const std::vector<std::string>& prediction_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const auto& n : kNames) v.emplace_back(n.name);
    return v;
  }();
  return names;
}

Prediction parse_prediction(const std::string& name) {
  for (const auto& n : kNames) {
    if (name == n.name) return n.p;
  }
  UD_FAIL_INPUT("unknown prediction type '", name,
                "' (valid: eps, x0, v, score, velocity, rf-velocity, instaflow, trigflow-F)");
}

Denoised from_prediction(Prediction p, const torch::Tensor& out, const torch::Tensor& x,
                         const torch::Tensor& t, const Schedule& sch) {
  const Local c = local(t, sch, x);
  Denoised d;
  switch (p) {
    case Prediction::kEps:
      d.eps = out;
      d.x0 = (x - c.s * out) / c.a;
      break;
    case Prediction::kX0:
      d.x0 = out;
      d.eps = (x - c.a * out) / c.s;
      break;
    case Prediction::kV:
      require_vp(p, sch);
      d.x0 = c.a * x - c.s * out;
      d.eps = c.s * x + c.a * out;
      break;
    case Prediction::kScore:
      d.eps = -c.s * out;
      d.x0 = (x - c.s * d.eps) / c.a;
      break;
    case Prediction::kVelocity: {
      // Solve [a s; a' s'] [x0; eps] = [x; out].
      const torch::Tensor det = c.a * c.ds - c.s * c.da;
      d.x0 = (c.ds * x - c.s * out) / det;
      d.eps = (c.a * out - c.da * x) / det;
      break;
    }
    case Prediction::kRfVelocity:
      d.x0 = (x - c.s * out) / (c.a + c.s);
      d.eps = out + d.x0;
      break;
    case Prediction::kInstaflow: {
      const torch::Tensor x_rf = x / (c.a + c.s), s = c.s / (c.a + c.s);
      d.x0 = x_rf + s * out;
      d.eps = x_rf - (1 - s) * out;
      break;
    }
    case Prediction::kTrigflowF: {
      require_trigflow(sch);
      const double sd = sch.sigma_d;
      d.x0 = torch::cos(c.t) * x - torch::sin(c.t) * sd * out;
      d.eps = (torch::sin(c.t) * x + torch::cos(c.t) * sd * out) / sd;
      break;
    }
  }
  return d;
}

torch::Tensor vp_target(Prediction p, const Denoised& d, const torch::Tensor& alpha,
                        const torch::Tensor& sigma) {
  switch (p) {
    case Prediction::kEps: return d.eps;
    case Prediction::kX0: return d.x0;
    case Prediction::kV: return alpha * d.eps - sigma * d.x0;
    default: break;
  }
  UD_ASSERT(false, "vp_target takes eps, x0 or v, not ", to_string(p));
  return {};
}

torch::Tensor to_prediction(Prediction p, const Denoised& d, const torch::Tensor& x,
                            const torch::Tensor& t, const Schedule& sch) {
  const Local c = local(t, sch, x);
  switch (p) {
    case Prediction::kEps:
    case Prediction::kX0: return vp_target(p, d, c.a, c.s);
    case Prediction::kV:
      require_vp(p, sch);
      return vp_target(p, d, c.a, c.s);
    case Prediction::kScore: return -d.eps / c.s;
    case Prediction::kVelocity: return c.da * d.x0 + c.ds * d.eps;
    case Prediction::kRfVelocity: return d.eps - d.x0;
    case Prediction::kInstaflow: return d.x0 - d.eps;
    case Prediction::kTrigflowF:
      require_trigflow(sch);
      return torch::cos(c.t) * d.eps - torch::sin(c.t) * d.x0 / sch.sigma_d;
  }
  return {};
}

torch::Tensor convert(Prediction from, Prediction to, const torch::Tensor& out,
                      const torch::Tensor& x_t, const torch::Tensor& t, const Schedule& schedule) {
  return to_prediction(to, from_prediction(from, out, x_t, t, schedule), x_t, t, schedule);
}

torch::Tensor rf_velocity_from_v(const torch::Tensor& v, const torch::Tensor& x_t,
                                 const torch::Tensor& alpha, const torch::Tensor& sigma) {
  return (alpha + sigma) * v - (alpha - sigma) * x_t;
}

Boundary edm_boundary(const torch::Tensor& t_in, double sd, double eps_min) {
  const torch::Tensor t = t_in.to(torch::kFloat64);
  Boundary b;
  b.c_skip = sd * sd / ((t - eps_min).pow(2) + sd * sd);
  b.c_out = sd * (t - eps_min) / (sd * sd + t.pow(2)).sqrt();
  b.c_in = 1 / (t.pow(2) + sd * sd).sqrt();
  b.c_noise = torch::log(t) / 4;
  return b;
}

Boundary lcm_boundary(const torch::Tensor& t_in, double sd) {
  const torch::Tensor ts = t_in.to(torch::kFloat64) / 0.1;
  Boundary b;
  b.c_skip = sd * sd / (ts.pow(2) + sd * sd);
  b.c_out = ts / (ts.pow(2) + sd * sd).sqrt();
  b.c_in = torch::ones_like(ts);
  b.c_noise = t_in.to(torch::kFloat64);
  return b;
}

}  // namespace unidiff::objectives
