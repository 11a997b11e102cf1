// objectives/sampling/registry.h.
#include "objectives/sampling/registry.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "objectives/parameterization.h"

namespace unidiff::objectives {
namespace {

using Needs = SamplerSpec::Needs;
using F = ScheduleFamily;

const char* kDdpmTables = "ddpm-linear, ddpm-cosine, ddpm-scaled-linear";

DdpmSamplerOptions ddpm_options(const SamplerOptions& o, int64_t steps) {
  DdpmSamplerOptions d;
  d.steps = steps;
  d.spacing = o.spacing;
  d.clip_x0 = o.clip_x0;
  return d;
}

/// The first `steps` times of the schedule's grid: a consistency function lands at t_min, which
/// is no re-noising level.
std::vector<double> multistep_times(const Schedule& sch, int64_t steps) {
  std::vector<double> g = sch.time_grid(steps);
  g.pop_back();
  return g;
}

bool meets(Needs needs, const SamplerModel& m) {
  switch (needs) {
    case Needs::kEps: return static_cast<bool>(m.eps);
    case Needs::kDenoise: return static_cast<bool>(m.denoise);
    case Needs::kConsistency: return static_cast<bool>(m.consistency);
    case Needs::kInstaflow: return static_cast<bool>(m.instaflow_w);
    case Needs::kEpsOrDenoise: return m.eps || m.denoise;
  }
  return false;
}

}  // namespace

std::vector<int64_t> lcm_times(int64_t num_steps, int64_t steps, int64_t grid) {
  if (grid <= 0) return timestep_subsequence(num_steps, steps, Spacing::kTrailing);
  UD_CHECK_INPUT(steps >= 1 && steps <= grid, "the lcm sampler takes 1 to ", grid,
                 " steps on this model's training grid of ", grid, " steps, not ", steps);
  const std::vector<int64_t> g = timestep_subsequence(num_steps, grid, Spacing::kTrailing);
  std::vector<int64_t> times;
  for (int64_t j = 0; j < steps; ++j) times.push_back(g[static_cast<size_t>(j * grid / steps)]);
  return times;
}

namespace {

std::vector<SamplerSpec> make_registry() {
  std::vector<SamplerSpec> r;
  r.push_back({"ddpm", "ancestral sampling (Algorithm 1) on a subsequence of the DDPM steps", Needs::kEps,
               {F::kDdpm}, kDdpmTables, true,
               [](const SamplerModel& m, torch::Tensor x, const SamplerOptions& o, int64_t steps, const NoiseFn& noise,
                  Trajectory* tr) {
                 return sample_ddpm(m.eps, m.schedule.ddpm, std::move(x), ddpm_options(o, steps), noise, tr);
               }});
  // The oracle takes DDIM on DDPM tables only; trained denoisers (rf, ncsn, trigflow) list it too,
  // and run it on their schedule's grid.
  r.push_back({"ddim", "DDIM (14) with --eta: on DDPM tables over code indices (--spacing), else on the schedule's grid",
               Needs::kEpsOrDenoise, {F::kDdpm}, kDdpmTables, true,
               [](const SamplerModel& m, torch::Tensor x, const SamplerOptions& o, int64_t steps, const NoiseFn& noise,
                  Trajectory* tr) {
                 if (m.eps && m.schedule.family == F::kDdpm) {
                   return sample_ddim(m.eps, m.schedule.ddpm, std::move(x), ddpm_options(o, steps), o.eta, noise, tr);
                 }
                 UD_CHECK_INPUT(m.denoise, "sampler 'ddim' needs a denoiser on schedule ", m.schedule.name);
                 return sample_ddim_any(m.denoise, m.schedule, std::move(x), steps, o.eta, noise, tr);
               }});
  r.push_back({"ddpm-simple", "DDPM's simple step (Algorithm 2)", Needs::kEps, {F::kDdpm}, kDdpmTables, false,
               [](const SamplerModel& m, torch::Tensor x, const SamplerOptions& o, int64_t steps, const NoiseFn& noise,
                  Trajectory*) {
                 const Schedule& sch = m.schedule;
                 const EpsFn w = [&](const torch::Tensor& xt, const torch::Tensor& t) {
                   return convert(Prediction::kEps, Prediction::kInstaflow, m.eps(xt, t), xt, t.to(torch::kFloat64), sch);
                 };
                 return sample_instaflow(w, sch, std::move(x), ddpm_options(o, steps), InstaflowVariant::kSimple, o.eta,
                                         noise);
               }});
  r.push_back({"instaflow", "InstaFlow (Algorithms 6-8, --instaflow_variant) on a w-prediction", Needs::kInstaflow,
               {F::kDdpm}, kDdpmTables, false,
               [](const SamplerModel& m, torch::Tensor x, const SamplerOptions& o, int64_t steps, const NoiseFn& noise,
                  Trajectory*) {
                 return sample_instaflow(m.instaflow_w, m.schedule, std::move(x), ddpm_options(o, steps), o.instaflow,
                                         o.eta, noise);
               }});
  r.push_back({"lcm", "multistep consistency sampling at trailing DDPM steps (Algorithm 5)", Needs::kConsistency,
               {F::kDdpm}, kDdpmTables, false,
               [](const SamplerModel& m, torch::Tensor x, const SamplerOptions& o, int64_t steps, const NoiseFn& noise,
                  Trajectory*) {
                 std::vector<double> times;
                 for (int64_t t : lcm_times(m.schedule.ddpm.num_steps, steps, o.grid)) times.push_back(static_cast<double>(t));
                 return sample_multistep(m.consistency, m.schedule, std::move(x), times, noise);
               }});
  r.push_back({"euler", "probability-flow ODE, Euler steps", Needs::kDenoise, {}, "every schedule", false,
               [](const SamplerModel& m, torch::Tensor x, const SamplerOptions&, int64_t steps, const NoiseFn&,
                  Trajectory*) { return sample_ode(m.denoise, m.schedule, std::move(x), steps, OdeMethod::kEuler); }});
  r.push_back({"heun", "probability-flow ODE, Heun steps", Needs::kDenoise, {}, "every schedule", false,
               [](const SamplerModel& m, torch::Tensor x, const SamplerOptions&, int64_t steps, const NoiseFn&,
                  Trajectory*) { return sample_ode(m.denoise, m.schedule, std::move(x), steps, OdeMethod::kHeun); }});
  r.push_back({"smld", "annealed Langevin dynamics over --steps noise levels", Needs::kDenoise, {F::kVe}, "ve", false,
               [](const SamplerModel& m, torch::Tensor x, const SamplerOptions& o, int64_t steps, const NoiseFn& noise,
                  Trajectory*) {
                 const double eps_step = o.smld_step * m.schedule.t_min * m.schedule.t_min;  // a_i / sigma_i^2
                 return sample_smld(m.denoise, m.schedule, std::move(x), steps, o.smld_inner, eps_step, noise);
               }});
  r.push_back({"cm", "multistep consistency sampling (Algorithm 4) at --cm_times or the grid", Needs::kConsistency,
               {F::kVe}, "ve", false,
               [](const SamplerModel& m, torch::Tensor x, const SamplerOptions& o, int64_t steps, const NoiseFn& noise,
                  Trajectory*) {
                 const std::vector<double> times = o.times.empty() ? multistep_times(m.schedule, steps) : o.times;
                 return sample_multistep(m.consistency, m.schedule, std::move(x), times, noise);
               }});
  r.push_back({"fewstep", "multistep consistency sampling on any schedule's grid", Needs::kConsistency, {},
               "every schedule", false,
               [](const SamplerModel& m, torch::Tensor x, const SamplerOptions& o, int64_t steps, const NoiseFn& noise,
                  Trajectory*) {
                 const std::vector<double> times = o.times.empty() ? multistep_times(m.schedule, steps) : o.times;
                 return sample_multistep(m.consistency, m.schedule, std::move(x), times, noise);
               }});
  r.push_back({"trigflow", "TrigFlow / sCM multistep sampling through F", Needs::kConsistency, {F::kTrigflow},
               "trigflow", false,
               [](const SamplerModel& m, torch::Tensor x, const SamplerOptions& o, int64_t steps, const NoiseFn& noise,
                  Trajectory*) {
                 const Schedule& sch = m.schedule;
                 // A TrigFlow consistency model outputs F; its one-step map to t = 0 is trigflow_step(t -> 0).
                 const ConsistencyFn via_F = [&](const torch::Tensor& xt, double t) {
                   const torch::Tensor F = (std::cos(t) * xt - m.consistency(xt, t)) / (std::sin(t) * sch.sigma_d);
                   return trigflow_step(xt, F, t, 0.0, sch.sigma_d);
                 };
                 std::vector<double> times = o.times.empty() ? multistep_times(sch, steps) : o.times;
                 times[0] = std::min(times[0], std::atan(80.0 / sch.sigma_d));  // sCM's t_max: sin t > 0 margin
                 return sample_multistep(via_F, sch, std::move(x), times, noise);
               }});
  return r;
}

}  // namespace

const std::vector<SamplerSpec>& samplers() {
  static const std::vector<SamplerSpec> registry = make_registry();
  return registry;
}

std::string sampler_names() {
  std::string s;
  for (const auto& spec : samplers()) s += (s.empty() ? "" : ", ") + spec.name;
  return s;
}

const SamplerSpec& select_sampler(const std::string& asked, const SamplerModel& model) {
  const std::string name = asked.empty() && !model.samplers.empty() ? model.samplers.front() : asked;
  UD_CHECK_INPUT(!name.empty(), "--sampler is required for ", model.kind.empty() ? "this model" : model.kind,
                 " (valid: ", sampler_names(), ")");
  if (!model.samplers.empty()) {
    std::string valid;
    for (const auto& n : model.samplers) valid += (valid.empty() ? "" : ", ") + n;
    UD_CHECK_INPUT(std::find(model.samplers.begin(), model.samplers.end(), name) != model.samplers.end(),
                   "unknown --sampler '", name, "' for ", model.kind, " (valid: ", valid, ")");
  }
  for (const auto& spec : samplers()) {
    if (spec.name != name) continue;
    if (model.samplers.empty()) {
      const bool ok = spec.families.empty() || std::find(spec.families.begin(), spec.families.end(),
                                                         model.schedule.family) != spec.families.end();
      UD_CHECK_INPUT(ok, "sampler '", name, "' takes schedules: ", spec.takes, " (got '", model.schedule.name, "')");
    }
    UD_CHECK_INPUT(meets(spec.needs, model), "sampler '", name, "' does not apply to ",
                   model.kind.empty() ? "this model" : model.kind);
    return spec;
  }
  UD_FAIL_INPUT("unknown --sampler '", name, "' (valid: ", sampler_names(), ")");
}

int64_t sampler_steps(const SamplerModel& model, const SamplerOptions& options) {
  if (!options.times.empty()) return static_cast<int64_t>(options.times.size());
  if (options.steps > 0) return options.steps;
  if (model.default_steps > 0) return model.default_steps;
  return model.schedule.family == ScheduleFamily::kDdpm ? model.schedule.ddpm.num_steps : 50;
}

torch::Tensor run_sampler(const SamplerSpec& spec, const SamplerModel& model, torch::Tensor x_T,
                          const SamplerOptions& options, const NoiseFn& noise, Trajectory* trajectory) {
  UD_CHECK_INPUT(trajectory == nullptr || spec.records, "sampler '", spec.name,
                 "' does not record its steps (ddpm and ddim do)");
  torch::NoGradGuard no_grad;
  return spec.run(model, std::move(x_T), options, sampler_steps(model, options), noise, trajectory);
}

}  // namespace unidiff::objectives
