#include "experiments/pretrain/objectives.h"

#include <ATen/record_function.h>

#include <cmath>
#include <cstdlib>
#include <numbers>

#include "core/error.h"
#include "core/rng.h"
#include "objectives/pretrain/consistency.h"
#include "objectives/ddpm_schedule.h"
#include "objectives/jvp.h"
#include "objectives/parameterization.h"

namespace unidiff::experiments {
namespace {

namespace o = objectives;
using o::per_sample;

struct ObjectiveInfo {
  const char* name;
  Objective id;
};

/// The registry: every objective's name, in the order the help lists them.
const std::vector<ObjectiveInfo>& registry() {
  static const std::vector<ObjectiveInfo> r = {
      {"ddpm", Objective::kDdpm},         {"rf", Objective::kRf},   {"ncsn", Objective::kNcsn},
      {"trigflow", Objective::kTrigflow}, {"ict", Objective::kIct}, {"scm", Objective::kScm},
  };
  return r;
}


/// The keyed draws of one step: (seed, purpose, step, global sample index).
struct Draws {
  uint32_t seed;
  const StepData& batch;
  torch::Device device;

  torch::Tensor normal(rng::Purpose p, at::IntArrayRef shape) const {
    return rng::normal({seed, p}, batch.step_key(), batch.index, shape, device);
  }
  /// One number per sample, [B].
  torch::Tensor normal1(rng::Purpose p) const { return normal(p, {1}).view({-1}); }
  torch::Tensor uniform1(rng::Purpose p) const {
    return rng::uniform({seed, p}, batch.step_key(), batch.index, {1}, device).view({-1});
  }
};

std::string fmt(double v) {
  char b[32];
  std::snprintf(b, sizeof(b), "%g", v);
  return b;
}

// --- ddpm: eps-, x0-, v- or InstaFlow's w-prediction on the discrete VP chain (FORMULAS (6),
// section 3; (32)-(33)). With --reflow the noise of sample i is the noise end of its pair (the
// pairs of a DDPM teacher's deterministic sampler: InstaFlow's reflow on the teacher's chain), with
// --rf_time=one every sample sits at the last step T - 1 (one-step distillation). -------

class DdpmObjective : public PretrainObjective {
 public:
  DdpmObjective(const DiffusionConfig& c, const ObjectiveContext& ctx)
      : c_(c), ctx_(ctx), prediction_(o::parse_prediction(c.prediction)),
        // The tables on the device, so the step's gathers never go through the host.
        tables_(o::DdpmSchedule::make(o::parse_beta_schedule(c.schedule), c.timesteps, c.beta_start,
                                      c.beta_end)
                    .to(ctx.device)) {}

  o::LossOutput loss(models::Network& net, const StepData& b) override {
    const Draws d{ctx_.seed, b, ctx_.device};
    // Reflow: the noise end of pair i, regenerated from its key as FlowObjective does.
    const torch::Tensor eps =
        c_.reflow ? rng::normal({c_.reflow_seed, rng::Purpose::kSampling}, 0, b.index, ctx_.data_shape, ctx_.device)
                  : d.normal(rng::Purpose::kNoise, ctx_.data_shape);
    const torch::Tensor t =
        c_.rf_time == "one"
            ? torch::full({b.x0.size(0)}, c_.timesteps - 1, torch::TensorOptions().dtype(torch::kInt64).device(ctx_.device))
            : rng::randint({ctx_.seed, rng::Purpose::kTimestep}, b.step_key(), b.index, c_.timesteps, ctx_.device);
    const torch::Tensor x_t = o::q_sample(tables_, b.x0, t, eps);
    // L_simple in the network's own parameterisation: target eps, x0, v = alpha eps - sigma x0, or
    // InstaFlow's w = x0 - eps (the network reads x_t; (32) maps it to x^RF = x_t / (alpha + sigma)).
    torch::Tensor target = eps;
    if (prediction_ == o::Prediction::kInstaflow) {
      target = b.x0 - eps;
    } else if (prediction_ != o::Prediction::kEps) {
      const torch::Tensor abar = tables_.alpha_bar_at(t, b.x0);
      target = o::vp_target(prediction_, {b.x0, eps}, abar.sqrt(), (1 - abar).sqrt());
    }
    return o::eps_mse_loss(net.forward_cond(x_t, t.to(torch::kFloat32), b.labels), target);
  }
  std::string describe() const override {
    return std::string(c_.reflow ? "reflow on a DDPM chain (pairs' noise key " + std::to_string(c_.reflow_seed) + "), "
                                 : "") +
           "DDPM (" + c_.prediction + "-prediction, " + c_.schedule + ", T=" + std::to_string(c_.timesteps) +
           (c_.rf_time == "one" ? ", every sample at t = T - 1" : "") + ")";
  }
  std::vector<std::string> setting_names() const override {
    return {"prediction", "diffusion_schedule", "diffusion_steps", "diffusion_beta_start", "diffusion_beta_end",
            "reflow", "reflow_seed", "rf_time"};
  }

 private:
  DiffusionConfig c_;
  ObjectiveContext ctx_;
  o::Prediction prediction_;
  o::DdpmSchedule tables_;
};

// --- rf: rectified flow / flow matching, reflow and one-step distillation (FORMULAS (28-29)) ---

class FlowObjective : public PretrainObjective {
 public:
  FlowObjective(const DiffusionConfig& c, const ObjectiveContext& ctx) : c_(c), ctx_(ctx) {}

  o::LossOutput loss(models::Network& net, const StepData& b) override {
    const Draws d{ctx_.seed, b, ctx_.device};
    torch::Tensor t;
    if (c_.rf_time == "logit-normal") {
      t = torch::sigmoid(d.normal1(rng::Purpose::kTimestep));
    } else if (c_.rf_time == "one") {
      t = torch::ones({b.x0.size(0)}, b.x0.options());
    } else {
      t = d.uniform1(rng::Purpose::kTimestep);
    }
    // Reflow: the noise end of pair i is the sampler's x_T of sample i, regenerated from its key
    // (experiments/sample.cpp draws x_T at stream step 0 of kSampling); else fresh noise.
    const torch::Tensor eps =
        c_.reflow ? rng::normal({c_.reflow_seed, rng::Purpose::kSampling}, 0, b.index, ctx_.data_shape, ctx_.device)
                  : d.normal(rng::Purpose::kNoise, ctx_.data_shape);
    const torch::Tensor tb = per_sample(t, b.x0);
    const torch::Tensor x_t = (1 - tb) * b.x0 + tb * eps;
    return o::eps_mse_loss(net.forward_cond(x_t, t * 1000.0, b.labels), eps - b.x0);
  }
  std::string describe() const override {
    return std::string(c_.reflow ? "reflow on pairs (noise key " + std::to_string(c_.reflow_seed) + "), "
                                 : "rectified flow, ") +
           "rf-velocity u = eps - x0, " + c_.rf_time + " t";
  }
  std::vector<std::string> setting_names() const override { return {"rf_time", "reflow", "reflow_seed"}; }

 private:
  DiffusionConfig c_;
  ObjectiveContext ctx_;
};

/// TrigFlow's time input c_noise(t) = t (sCM): a larger scale (say 1000 t, as for rf) makes F
/// oscillate in t, and sCM's dF/dt with it (measured on the toy moons: 1-step SW 1.39 vs 0.11).
const double kTrigflowTimeScale = 1.0;

/// ln sigma of the VE objectives as the network's time input: 1000 ln(sigma) / 4.
torch::Tensor ve_time_input(const torch::Tensor& sigma) { return 250.0 * sigma.log(); }
/// EDM's input scaling c_in = 1 / sqrt(sigma^2 + sigma_d^2), per sample against x.
torch::Tensor ve_input(const torch::Tensor& x, const torch::Tensor& sigma, double sigma_d) {
  return x * per_sample((sigma.pow(2) + sigma_d * sigma_d).rsqrt(), x);
}

/// The ict consistency function f = c_skip x + c_out F(c_in x, 250 ln sigma), boundary at
/// sigma_min (FORMULAS (19)); sigma per sample [B]. Shared by training and sampling.
torch::Tensor ict_consistency(const NetFn& net, const torch::Tensor& x, const torch::Tensor& sigma,
                              double sigma_d, double sigma_min) {
  const o::Boundary bd = o::edm_boundary(sigma, sigma_d, sigma_min);
  const torch::Tensor F = net(ve_input(x, sigma, sigma_d), ve_time_input(sigma));
  return per_sample(bd.c_skip, x) * x + per_sample(bd.c_out, x) * F;
}

/// TrigFlow's x0_hat = cos t x - sin t sigma_d F(x / sigma_d, 1000 t) (FORMULAS (38)); for sCM
/// the consistency function. t per sample [B].
torch::Tensor trigflow_x0(const NetFn& net, const torch::Tensor& x, const torch::Tensor& t, double sigma_d) {
  const torch::Tensor F = net(x / sigma_d, t * kTrigflowTimeScale);
  return per_sample(torch::cos(t), x) * x - per_sample(torch::sin(t), x) * sigma_d * F;
}

/// NCSN's E[x0 | x] = x + sigma^2 score = x - sigma F(c_in x, 250 ln sigma); sigma per sample.
torch::Tensor ncsn_x0(const NetFn& net, const torch::Tensor& x, const torch::Tensor& sigma, double sigma_d) {
  return x - per_sample(sigma, x) * net(ve_input(x, sigma, sigma_d), ve_time_input(sigma));
}

/// Binds a class-conditional network call to its labels.
NetFn bind(models::Network& net, const torch::Tensor& labels) {
  return [&net, labels](const torch::Tensor& x, const torch::Tensor& t) { return net.forward_cond(x, t, labels); };
}

// --- ncsn: denoising score matching over a continuum of noise levels (FORMULAS section 3) -----

class DsmObjective : public PretrainObjective {
 public:
  DsmObjective(const DiffusionConfig& c, const ObjectiveContext& ctx) : c_(c), ctx_(ctx) {}

  /// sum_i lambda(sigma) || s + (x~ - x) / sigma^2 ||^2 with lambda = sigma^2 and s = -F / sigma
  /// is || F - eps ||^2; ln sigma uniform is the limit of NCSN's geometric levels drawn uniformly.
  o::LossOutput loss(models::Network& net, const StepData& b) override {
    const Draws d{ctx_.seed, b, ctx_.device};
    const double lo = std::log(c_.sigma_min), hi = std::log(c_.sigma_max);
    const torch::Tensor sigma = torch::exp(lo + (hi - lo) * d.uniform1(rng::Purpose::kTimestep));
    const torch::Tensor eps = d.normal(rng::Purpose::kNoise, ctx_.data_shape);
    const torch::Tensor x = b.x0 + per_sample(sigma, b.x0) * eps;
    return o::eps_mse_loss(net.forward_cond(ve_input(x, sigma, c_.sigma_d), ve_time_input(sigma), b.labels), eps);
  }
  std::string describe() const override {
    return "NCSN denoising score matching (sigma log-uniform in [" + fmt(c_.sigma_min) + ", " +
           fmt(c_.sigma_max) + "], lambda = sigma^2)";
  }
  std::vector<std::string> setting_names() const override { return {"sigma_min", "sigma_max", "sigma_data"}; }

 private:
  DiffusionConfig c_;
  ObjectiveContext ctx_;
};

// --- trigflow and scm share the TrigFlow forward process ---------------------------------------

/// (t [B], z = sigma_d eps, x_t, v_t = dx_t/dt) of one step.
struct TrigflowPoint {
  torch::Tensor t, z, x_t, v_t;
};
TrigflowPoint trigflow_point(const DiffusionConfig& c, const Draws& d, const torch::Tensor& x0,
                             const std::vector<int64_t>& shape) {
  TrigflowPoint p;
  p.t = o::trigflow_time(c.p_mean + c.p_std * d.normal1(rng::Purpose::kTimestep), c.sigma_d);
  p.z = c.sigma_d * d.normal(rng::Purpose::kNoise, shape);
  const torch::Tensor cos = per_sample(torch::cos(p.t), x0), sin = per_sample(torch::sin(p.t), x0);
  p.x_t = cos * x0 + sin * p.z;
  p.v_t = cos * p.z - sin * x0;
  return p;
}

class TrigflowObjective : public PretrainObjective {
 public:
  TrigflowObjective(const DiffusionConfig& c, const ObjectiveContext& ctx) : c_(c), ctx_(ctx) {}

  /// || sigma_d F(x_t / sigma_d, t) - v_t ||^2 (handbook 3.1.4).
  o::LossOutput loss(models::Network& net, const StepData& b) override {
    const TrigflowPoint p = trigflow_point(c_, {ctx_.seed, b, ctx_.device}, b.x0, ctx_.data_shape);
    const torch::Tensor F = net.forward_cond(p.x_t / c_.sigma_d, p.t * kTrigflowTimeScale, b.labels);
    return o::eps_mse_loss(c_.sigma_d * F, p.v_t);
  }
  std::string describe() const override {
    return "TrigFlow diffusion (sigma_d " + fmt(c_.sigma_d) + ", tau ~ N(" + fmt(c_.p_mean) + ", " +
           fmt(c_.p_std) + "^2))";
  }
  std::vector<std::string> setting_names() const override { return {"sigma_data", "p_mean", "p_std"}; }

 private:
  DiffusionConfig c_;
  ObjectiveContext ctx_;
};

// --- ict: consistency training with the iCT curriculum and pseudo-Huber loss (FORMULAS (25)) --

class ConsistencyTrainingObjective : public PretrainObjective {
 public:
  ConsistencyTrainingObjective(const DiffusionConfig& c, const ObjectiveContext& ctx)
      : c_(c), ctx_(ctx) {
    int64_t elements = 1;
    for (int64_t s : ctx.data_shape) elements *= s;
    huber_c_ = c.huber_c > 0 ? c.huber_c : o::ict_huber_c(elements);
  }

  int64_t prepare(int64_t step) override {
    const int64_t n = o::ict_intervals(step, ctx_.total_steps, c_.ct_s0, c_.ct_s1);
    if (n != intervals_) {  // the curriculum moved on: new grid and interval weights
      // Host arithmetic on float64 tables (then copied to the device), one operator in profiles.
      RECORD_FUNCTION("unidiff::ict_curriculum_tables", std::vector<c10::IValue>());
      intervals_ = n;
      const torch::Tensor sigmas = o::karras_sigmas(n, c_.sigma_min, c_.sigma_max);
      probs_ = o::ict_interval_probs(sigmas, c_.p_mean, c_.p_std).to(ctx_.device);
      sigmas_ = sigmas.to(ctx_.device);
    }
    return n;
  }

  o::LossOutput loss(models::Network& net, const StepData& b) override {
    const Draws d{ctx_.seed, b, ctx_.device};
    UD_ASSERT(intervals_ == o::ict_intervals(b.step, ctx_.total_steps, c_.ct_s0, c_.ct_s1),
              "consistency training: prepare(", b.step, ") was not called before the loss");
    const torch::Tensor i = o::sample_intervals(probs_, d.uniform1(rng::Purpose::kTimestep));
    const torch::Tensor s_lo = sigmas_.index_select(0, i).to(torch::kFloat32);
    const torch::Tensor s_hi = sigmas_.index_select(0, i + 1).to(torch::kFloat32);
    const torch::Tensor z = d.normal(rng::Purpose::kNoise, ctx_.data_shape);
    torch::Tensor teacher;
    {
      // theta^- = stop-gradient of theta (iCT: no EMA teacher).
      torch::NoGradGuard no_grad;
      teacher = ict_consistency(bind(net, b.labels), b.x0 + per_sample(s_lo, b.x0) * z, s_lo,
                                c_.sigma_d, c_.sigma_min);
    }
    const torch::Tensor student = ict_consistency(bind(net, b.labels), b.x0 + per_sample(s_hi, b.x0) * z,
                                                  s_hi, c_.sigma_d, c_.sigma_min);
    const torch::Tensor weight = 1.0 / (s_hi - s_lo);
    o::LossOutput out;
    out.loss = (weight * o::pseudo_huber(student, teacher, huber_c_)).mean();
    out.stats["loss"] = out.loss.detach();
    return out;
  }
  std::string describe() const override {
    return "consistency training (iCT: sigma in [" + fmt(c_.sigma_min) + ", " + fmt(c_.sigma_max) +
           "], intervals " + std::to_string(c_.ct_s0) + " -> " + std::to_string(c_.ct_s1) +
           ", pseudo-Huber c " + fmt(huber_c_) + ", ln sigma ~ N(" + fmt(c_.p_mean) + ", " + fmt(c_.p_std) + "^2))";
  }
  std::vector<std::string> setting_names() const override {
    return {"sigma_min", "sigma_max", "sigma_data", "p_mean", "p_std", "ct_s0", "ct_s1", "huber_c"};
  }

 private:
  DiffusionConfig c_;
  ObjectiveContext ctx_;
  double huber_c_;
  int64_t intervals_ = -1;
  torch::Tensor sigmas_, probs_;
};

// --- scm: continuous-time consistency training on TrigFlow (handbook 2.5.1) -------------------

class ScmObjective : public PretrainObjective {
 public:
  ScmObjective(const DiffusionConfig& c, const ObjectiveContext& ctx) : c_(c), ctx_(ctx) {
    warmup_ = c.tangent_warmup >= 0 ? c.tangent_warmup : ctx.total_steps / 10;
  }

  o::LossOutput loss(models::Network& net, const StepData& b) override {
    const TrigflowPoint p = trigflow_point(c_, {ctx_.seed, b, ctx_.device}, b.x0, ctx_.data_shape);
    const torch::Tensor x_in = p.x_t / c_.sigma_d, t_in = p.t * kTrigflowTimeScale;
    // F_theta- and dF_theta-/dt along the training trajectory: the JVP of F(x / sigma_d, 1000 t)
    // with tangents (dx_t/dt / sigma_d, 1000).
    const o::TensorFn F = [&](const std::vector<torch::Tensor>& in) {
      return net.forward_cond(in[0], in[1], b.labels);
    };
    const std::vector<torch::Tensor> inputs{x_in, t_in};
    const std::vector<torch::Tensor> tangents{p.v_t / c_.sigma_d, torch::full_like(t_in, kTrigflowTimeScale)};
    const auto [F_minus, dF_dt] = c_.jvp == "finite-difference"
                                      ? o::jvp_finite_difference(F, inputs, tangents, 1e-3)
                                      : o::jvp_forward_ad(F, inputs, tangents);
    // The tangent warm-up r = min(1, (step + 1) / warmup), from the device counter when there is one.
    const torch::Tensor r =
        warmup_ <= 0 ? torch::tensor(1.0)
        : b.step_counter.defined()
            ? ((b.step_counter + 1).to(torch::kFloat64) / static_cast<double>(warmup_)).clamp_max(1.0)
            : torch::tensor(std::min(1.0, static_cast<double>(b.step + 1) / static_cast<double>(warmup_)));
    const torch::Tensor g = o::scm_target_direction(p.x_t, p.t, F_minus, dF_dt, p.v_t, c_.sigma_d, r);
    const torch::Tensor target = (F_minus + g).detach();
    o::LossOutput out = o::eps_mse_loss(net.forward_cond(x_in, t_in, b.labels), target);
    out.stats["g_norm"] = g.reshape({g.size(0), -1}).norm(2, 1).mean().detach();
    return out;
  }
  std::string describe() const override {
    return "continuous-time consistency (sCT on TrigFlow, sigma_d " + fmt(c_.sigma_d) + ", tau ~ N(" +
           fmt(c_.p_mean) + ", " + fmt(c_.p_std) + "^2), JVP by " + c_.jvp + ", tangent warm-up " +
           std::to_string(warmup_) + " steps)";
  }
  std::vector<std::string> setting_names() const override {
    return {"sigma_data", "p_mean", "p_std", "tangent_warmup", "jvp"};
  }

 private:
  DiffusionConfig c_;
  ObjectiveContext ctx_;
  int64_t warmup_;
};

}  // namespace

const std::vector<std::string>& objective_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const auto& r : registry()) n.push_back(r.name);
    return n;
  }();
  return names;
}

std::string to_string(Objective o) {
  for (const auto& r : registry()) {
    if (r.id == o) return r.name;
  }
  UD_ASSERT(false, "objective without a name");
  return {};
}

Objective resolve_objective(const DiffusionConfig& c) {
  const std::string name = c.objective.empty() ? (c.schedule == "rf" ? "rf" : "ddpm") : c.objective;
  std::string known;
  for (const auto& r : registry()) {
    if (name == r.name) return r.id;
    known += (known.empty() ? "" : ", ") + std::string(r.name);
  }
  UD_FAIL_INPUT("unknown --objective '", name, "' (valid: ", known, ")");
}

DiffusionConfig resolve_diffusion(const DiffusionConfig& in) {
  DiffusionConfig c = in;
  const Objective obj = resolve_objective(in);
  c.objective = to_string(obj);
  const bool trig = obj == Objective::kTrigflow || obj == Objective::kScm;
  if (std::isnan(c.p_mean)) c.p_mean = trig ? -1.0 : -1.1;
  if (std::isnan(c.p_std)) c.p_std = trig ? 1.4 : 2.0;
  UD_CHECK_INPUT(c.sigma_d > 0, "--sigma_data must be positive, got ", c.sigma_d);
  UD_CHECK_INPUT(c.p_std > 0, "--p_std must be positive, got ", c.p_std);
  switch (obj) {
    case Objective::kDdpm:
      UD_CHECK_INPUT(c.schedule != "rf", "--diffusion_schedule=rf trains --objective=rf, not ddpm");
      UD_CHECK_INPUT(c.prediction == "eps" || c.prediction == "x0" || c.prediction == "v" || c.prediction == "instaflow",
                     "--prediction '", c.prediction,
                     "' is not supported on a DDPM schedule (valid: eps, x0, v, instaflow; rf-velocity needs ",
                     "--objective=rf)");
      UD_CHECK_INPUT(c.rf_time == "uniform" || c.rf_time == "one", "--rf_time '", c.rf_time, "' on a DDPM chain ",
                     "(valid: uniform, one; logit-normal is for --objective=rf)");
      o::parse_beta_schedule(c.schedule);
      break;
    case Objective::kRf:
      c.schedule = "rf";
      UD_CHECK_INPUT(c.prediction == "rf-velocity" || c.prediction == "eps",
                     "--objective=rf trains --prediction=rf-velocity (u = eps - x0), got '", c.prediction, "'");
      c.prediction = "rf-velocity";
      UD_CHECK_INPUT(c.rf_time == "uniform" || c.rf_time == "logit-normal" || c.rf_time == "one",
                     "--rf_time '", c.rf_time, "' is unknown (valid: uniform, logit-normal, one)");
      break;
    case Objective::kNcsn:
    case Objective::kIct:
      UD_CHECK_INPUT(c.sigma_min > 0 && c.sigma_max > c.sigma_min, "--sigma_min and --sigma_max need ",
                     "0 < sigma_min < sigma_max, got ", c.sigma_min, " and ", c.sigma_max);
      break;
    case Objective::kTrigflow:
    case Objective::kScm:
      UD_CHECK_INPUT(c.sigma_max > 0, "--sigma_max must be positive, got ", c.sigma_max);
      break;
  }
  if (obj == Objective::kIct) {
    UD_CHECK_INPUT(c.ct_s0 >= 1 && c.ct_s1 >= c.ct_s0, "--ct_s0 and --ct_s1 need 1 <= s0 <= s1, got ",
                   c.ct_s0, " and ", c.ct_s1);
    UD_CHECK_INPUT(c.huber_c >= 0, "--huber_c must be >= 0 (0 = 0.00054 sqrt(d)), got ", c.huber_c);
  }
  if (obj == Objective::kScm) {
    UD_CHECK_INPUT(c.jvp == "forward-ad" || c.jvp == "finite-difference", "--jvp '", c.jvp,
                   "' is unknown (valid: forward-ad, finite-difference)");
  }
  UD_CHECK_INPUT(!c.reflow || obj == Objective::kRf || obj == Objective::kDdpm,
                 "--reflow trains a rectified flow (--objective=rf) or a DDPM chain (InstaFlow: --objective=ddpm "
                 "--prediction=instaflow)");
  return c;
}

DiffusionConfig resolve_diffusion(const DiffusionConfig& in, const ObjectiveContext& ctx) {
  DiffusionConfig c = resolve_diffusion(in);
  if (c.huber_c <= 0) {
    int64_t elements = 1;
    for (int64_t s : ctx.data_shape) elements *= s;
    c.huber_c = o::ict_huber_c(elements);
  }
  if (c.tangent_warmup < 0) c.tangent_warmup = ctx.total_steps / 10;
  return c;
}

std::unique_ptr<PretrainObjective> make_pretrain_objective(const DiffusionConfig& c,
                                                           const ObjectiveContext& ctx) {
  switch (resolve_objective(c)) {
    case Objective::kDdpm: return std::make_unique<DdpmObjective>(c, ctx);
    case Objective::kRf: return std::make_unique<FlowObjective>(c, ctx);
    case Objective::kNcsn: return std::make_unique<DsmObjective>(c, ctx);
    case Objective::kTrigflow: return std::make_unique<TrigflowObjective>(c, ctx);
    case Objective::kIct: return std::make_unique<ConsistencyTrainingObjective>(c, ctx);
    case Objective::kScm: return std::make_unique<ScmObjective>(c, ctx);
  }
  UD_ASSERT(false, "objective not dispatched");
  return nullptr;
}

ModelFunctions model_functions(const DiffusionConfig& c, const NetFn& net) {
  ModelFunctions m;
  /// The samplers' scalar time as a per-sample tensor.
  auto times = [](const torch::Tensor& x, double v) { return torch::full({x.size(0)}, v, x.options()); };
  const double sd = c.sigma_d, smin = c.sigma_min;
  switch (resolve_objective(c)) {
    case Objective::kDdpm:
      UD_FAIL_INPUT("a DDPM model samples with the discrete samplers (ddpm, ddim)");
    case Objective::kRf:
      m.schedule = o::Schedule::rf();
      m.denoise = [net, times](const torch::Tensor& x, double t) {
        return x - t * net(x, times(x, 1000.0 * t));  // x0 = x_t - t u
      };
      m.samplers = {"euler", "heun", "ddim"};
      break;
    case Objective::kNcsn:
      m.schedule = o::Schedule::ve(c.sigma_min, c.sigma_max);
      m.denoise = [net, times, sd](const torch::Tensor& x, double sigma) {
        return ncsn_x0(net, x, times(x, sigma), sd);
      };
      m.samplers = {"smld", "euler", "heun", "ddim"};
      break;
    case Objective::kTrigflow:
    case Objective::kScm: {
      m.schedule = o::Schedule::trigflow(c.sigma_d);
      // Sampling starts at sigma_max / sigma_d on the tan scale (sCM: atan(80 / 0.5)).
      m.schedule.t_max = std::atan(c.sigma_max / c.sigma_d);
      const auto x0_hat = [net, times, sd](const torch::Tensor& x, double t) {
        return trigflow_x0(net, x, times(x, t), sd);
      };
      if (resolve_objective(c) == Objective::kTrigflow) {
        m.denoise = x0_hat;
        m.samplers = {"heun", "euler", "ddim"};
      } else {
        m.consistency = x0_hat;
        m.samplers = {"cm"};
      }
      break;
    }
    case Objective::kIct:
      m.schedule = o::Schedule::ve(c.sigma_min, c.sigma_max);
      m.consistency = [net, times, sd, smin](const torch::Tensor& x, double sigma) {
        return ict_consistency(net, x, times(x, sigma), sd, smin);
      };
      m.samplers = {"cm"};
      break;
  }
  return m;
}

}  // namespace unidiff::experiments
