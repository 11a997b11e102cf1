#include "experiments/sample.h"

#include <ATen/Context.h>

#include <chrono>
#include <cstdio>
#include <filesystem>

#include "core/error.h"
#include "core/image.h"
#include "core/log.h"
#include "core/rng.h"
#include "data/dataset.h"
#include "dist/world.h"
#include "experiments/model_io.h"
#include "experiments/objective.h"
#include "objectives/ddpm_schedule.h"
#include "models/gmm.h"
#include "models/group_norm_act.h"
#include "models/precision.h"
#include "models/unet.h"
#include "models/network.h"
#include "objectives/ode_samplers.h"
#include "objectives/parameterization.h"
#include "objectives/samplers.h"
#include "objectives/schedule.h"

namespace unidiff::experiments {
namespace {

namespace fs = std::filesystem;

const std::vector<std::string>& sampler_names() {
  static const std::vector<std::string> names = {"ddpm", "ddim"};
  return names;
}

/// Which schedule families each oracle sampler takes.
struct SamplerRule {
  const char* name;
  std::vector<objectives::ScheduleFamily> families;  // empty = every schedule
  const char* takes;
};

const std::vector<SamplerRule>& oracle_samplers() {
  using F = objectives::ScheduleFamily;
  static const std::vector<SamplerRule> rules = {
      {"ddpm", {F::kDdpm}, "ddpm-linear, ddpm-cosine, ddpm-scaled-linear"},
      {"ddpm-simple", {F::kDdpm}, "ddpm-linear, ddpm-cosine, ddpm-scaled-linear"},
      {"ddim", {F::kDdpm}, "ddpm-linear, ddpm-cosine, ddpm-scaled-linear"},
      {"instaflow", {F::kDdpm}, "ddpm-linear, ddpm-cosine, ddpm-scaled-linear"},
      {"lcm", {F::kDdpm}, "ddpm-linear, ddpm-cosine, ddpm-scaled-linear"},
      {"smld", {F::kVe}, "ve"},
      {"cm", {F::kVe}, "ve"},
      {"trigflow", {F::kTrigflow}, "trigflow"},
      {"euler", {}, "every schedule"},
      {"heun", {}, "every schedule"},
      {"fewstep", {}, "every schedule"},
  };
  return rules;
}

void check_oracle_sampler(const std::string& sampler, const objectives::Schedule& sch) {
  std::string known;
  for (const auto& r : oracle_samplers()) {
    known += (known.empty() ? "" : ", ") + std::string(r.name);
    if (sampler != r.name) continue;
    const bool ok = r.families.empty() ||
                    std::find(r.families.begin(), r.families.end(), sch.family) != r.families.end();
    UD_CHECK_INPUT(ok, "sampler '", sampler, "' takes schedules: ", r.takes, " (got '", sch.name, "')");
    return;
  }
  UD_FAIL_INPUT("unknown --sampler '", sampler, "' (valid: ", known, ")");
}

/// Samples from the mixture oracle with any sampler: one chunk of samples with indices idx.
torch::Tensor oracle_chunk(const SampleConfig& c, const models::GaussianMixture& gmm,
                           const objectives::Schedule& sch, const torch::Tensor& idx) {
  namespace o = objectives;
  const rng::Stream stream{c.seed, rng::Purpose::kSampling};
  const std::vector<int64_t> shape{gmm.dim()};
  const o::NoiseFn noise = [&](int64_t i) {
    return rng::normal(stream, static_cast<uint64_t>(i + 1), idx, shape).to(torch::kFloat64);
  };
  const torch::Tensor x_T =
      sch.sigma(sch.t_max) * rng::normal(stream, 0, idx, shape).to(torch::kFloat64);
  const o::DenoiseFn denoise = [&](const torch::Tensor& x, double t) {
    return gmm.posterior_mean(x, torch::tensor(sch.alpha(t), torch::kFloat64),
                              torch::tensor(sch.sigma(t), torch::kFloat64));
  };
  auto x0_at = [&](const torch::Tensor& x, const torch::Tensor& t) {
    const o::Coeffs co = sch.at(t);
    return gmm.posterior_mean(x, co.alpha, co.sigma);
  };
  const o::EpsFn eps_fn = [&](const torch::Tensor& x, const torch::Tensor& t) {
    const torch::Tensor tf = t.to(torch::kFloat64);
    return o::from_prediction(o::Prediction::kX0, x0_at(x, tf), x, tf, sch).eps;
  };
  // The exact consistency function: closed form for one Gaussian, the ODE otherwise. On ve it
  // ends at sigma = t_min (the CM boundary); elsewhere at the data.
  const bool ve = sch.family == o::ScheduleFamily::kVe;
  const o::ConsistencyFn ode_f = o::ode_consistency(denoise, sch, c.oracle_ode_steps);
  const o::ConsistencyFn f = [&](const torch::Tensor& x, double t) {
    if (gmm.components() == 1) {
      return gmm.ode_map(x, sch.alpha(t), sch.sigma(t), 1.0, ve ? sch.t_min : 0.0);
    }
    return ode_f(x, t);
  };
  const int64_t steps = c.steps > 0 ? c.steps
                                    : (sch.family == o::ScheduleFamily::kDdpm ? sch.ddpm.num_steps : 50);
  o::DdpmSamplerOptions ddpm_opts;
  ddpm_opts.steps = steps;
  ddpm_opts.spacing = o::parse_spacing(c.spacing);
  auto multistep_times = [&] {
    std::vector<double> g = sch.time_grid(steps);
    g.pop_back();  // t_min is where the consistency function lands, not a re-noising level
    return g;
  };
  const std::string& s = c.sampler;
  if (s == "ddpm") return o::sample_ddpm(eps_fn, sch.ddpm, x_T, ddpm_opts, noise);
  if (s == "ddim") return o::sample_ddim(eps_fn, sch.ddpm, x_T, ddpm_opts, c.eta, noise);
  if (s == "ddpm-simple") {
    return o::sample_instaflow(
        [&](const torch::Tensor& x, const torch::Tensor& t) {
          const torch::Tensor tf = t.to(torch::kFloat64);
          return o::convert(o::Prediction::kEps, o::Prediction::kInstaflow, eps_fn(x, t), x, tf, sch);
        },
        sch, x_T, ddpm_opts, o::InstaflowVariant::kSimple, c.eta, noise);
  }
  if (s == "instaflow") {
    const o::InstaflowVariant v = c.instaflow_variant == "posterior" ? o::InstaflowVariant::kPosterior
                                  : c.instaflow_variant == "simple"  ? o::InstaflowVariant::kSimple
                                                                     : o::InstaflowVariant::kDdim;
    UD_CHECK_INPUT(c.instaflow_variant == "posterior" || c.instaflow_variant == "simple" ||
                       c.instaflow_variant == "ddim",
                   "unknown --instaflow_variant '", c.instaflow_variant,
                   "' (valid: posterior, simple, ddim)");
    const o::EpsFn w_fn = [&](const torch::Tensor& x, const torch::Tensor& t) {
      const torch::Tensor tf = t.to(torch::kFloat64);
      return o::to_prediction(o::Prediction::kInstaflow,
                              o::from_prediction(o::Prediction::kX0, x0_at(x, tf), x, tf, sch), x, tf,
                              sch);
    };
    return o::sample_instaflow(w_fn, sch, x_T, ddpm_opts, v, c.eta, noise);
  }
  if (s == "euler" || s == "heun") {
    return o::sample_ode(denoise, sch, x_T, steps, s == "euler" ? o::OdeMethod::kEuler : o::OdeMethod::kHeun);
  }
  if (s == "smld") {
    const double eps_step = c.smld_step * sch.t_min * sch.t_min;  // a_i / sigma_i^2 = smld_step
    return o::sample_smld(denoise, sch, x_T, steps, c.smld_inner, eps_step, noise);
  }
  if (s == "cm" || s == "fewstep") return o::sample_multistep(f, sch, x_T, multistep_times(), noise);
  if (s == "lcm") {
    std::vector<double> times;
    for (int64_t t : o::timestep_subsequence(sch.ddpm.num_steps, steps, o::Spacing::kTrailing)) {
      times.push_back(static_cast<double>(t));
    }
    return o::sample_multistep(f, sch, x_T, times, noise);
  }
  if (s == "trigflow") {
    // A TrigFlow consistency model outputs F; its one-step map to t = 0 is trigflow_step(t -> 0).
    const o::ConsistencyFn via_F = [&](const torch::Tensor& x, double t) {
      const torch::Tensor F = (std::cos(t) * x - f(x, t)) / (std::sin(t) * sch.sigma_d);
      return o::trigflow_step(x, F, t, 0.0, sch.sigma_d);
    };
    std::vector<double> times = multistep_times();
    times[0] = std::min(times[0], std::atan(80.0 / sch.sigma_d));  // sCM's t_max: sin t > 0 margin
    return o::sample_multistep(via_F, sch, x_T, times, noise);
  }
  UD_ASSERT(false, "sampler ", s, " not dispatched");
  return {};
}

torch::Tensor run_oracle_sample(const SampleConfig& c) {
  UD_CHECK_INPUT(!c.gmm_file.empty(), "--model=gmm needs --gmm_file (HDF5 with /weights, /means, /stds)");
  const models::GaussianMixture gmm = models::GaussianMixture::load(c.gmm_file);
  const objectives::Schedule sch = objectives::Schedule::parse(c.schedule);
  log::info("sample", detail::str_cat(c.num, " samples of the ", gmm.components(), "-component, ",
                                      gmm.dim(), "-D mixture oracle with ", c.sampler, " on ",
                                      sch.name, ", ", c.steps, " steps (0 = default)"));
  std::vector<torch::Tensor> chunks;
  for (int64_t begin = 0; begin < c.num; begin += c.batch) {
    chunks.push_back(sample_gmm_oracle(c, gmm, begin, std::min(c.num, begin + c.batch)));
  }
  return torch::cat(chunks);
}

}  // namespace

torch::Tensor sample_gmm_oracle(const SampleConfig& c, const models::GaussianMixture& gmm,
                                int64_t begin, int64_t end) {
  const objectives::Schedule sch = objectives::Schedule::parse(c.schedule);
  UD_CHECK_INPUT(!c.sampler.empty(), "--model=gmm needs a --sampler");
  check_oracle_sampler(c.sampler, sch);
  if (sch.family == objectives::ScheduleFamily::kDdpm) {
    UD_CHECK_INPUT(c.steps <= sch.ddpm.num_steps, "--steps ", c.steps, " exceeds T = ",
                   sch.ddpm.num_steps);
  }
  torch::NoGradGuard no_grad;
  return oracle_chunk(c, gmm, sch, rng::arange_indices(begin, end)).to(torch::kFloat32);
}

namespace {

/// The labels of samples [begin, end) of a conditional model: --label, or i mod K.
torch::Tensor sample_labels(const SampleConfig& c, const models::Network& net, int64_t begin,
                            int64_t end, torch::Device device) {
  const int64_t k = net.num_classes();
  if (k == 0) return {};
  const torch::Tensor idx = torch::arange(begin, end, torch::TensorOptions().dtype(torch::kInt64));
  return (c.label >= 0 ? torch::full_like(idx, c.label) : idx.remainder(k)).to(device);
}

/// The network's output with classifier-free guidance (FORMULAS (23), w = 1: none) for a
/// conditional model: uncond + w (cond - uncond), combined in the network's own output space
/// (the conversions to eps, x0 or velocity are affine in it at fixed x and t). The network runs in
/// c's precision and layout; what it returns is float32 and contiguous, so the sampler's arithmetic
/// and the guidance combination are float32 whatever the network ran in.
torch::Tensor guided_output(const SampleConfig& c, models::Network& net, const torch::Tensor& x,
                            const torch::Tensor& t, const torch::Tensor& labels) {
  const auto call = [&](const torch::Tensor& y) {
    const models::AutocastScope autocast(x.device().type(), c.precision);
    const torch::Tensor in = models::to_layout(x, c.channels_last);
    const torch::Tensor out = y.defined() ? net.forward_cond(in, t, y) : net.forward(in, t);
    return out.to(torch::kFloat32).contiguous();
  };
  if (net.num_classes() == 0) return call({});
  const torch::Tensor cond = call(labels);
  if (c.cfg_scale == 1.0) return cond;
  return objectives::cfg_combine(cond, call(torch::full_like(labels, net.num_classes())), c.cfg_scale);
}

/// Refuses network options the device cannot take (before any work).
void check_network_options(const SampleConfig& c, torch::Device device) {
  models::validate_precision(c.precision);
  if (c.fused_group_norm) models::check_fused_group_norm(device);
}

/// The network on `device` in eval mode, in c's layout and with c's fused norms; cuDNN autotuning.
void prepare_network(const SampleConfig& c, LoadedModel& m, torch::Device device) {
  check_network_options(c, device);
  m.module->to(device);
  m.module->eval();
  models::set_channels_last(*m.module, c.channels_last && m.network.data_shape.size() == 3);
  if (c.fused_group_norm && !models::set_fused_group_norm(*m.module, true)) {
    log::warn("sample", "--fused_group_norm has no effect on a " + m.network.arch + " (it has no group norms)");
  }
  if (c.cudnn_benchmark && !device.is_cuda()) log::warn("sample", "--cudnn_benchmark has no effect on " + device.str());
  // Switched on only: the evaluation during a training run must not turn the run's autotuning off.
  if (c.cudnn_benchmark && device.is_cuda()) at::globalContext().setBenchmarkCuDNN(true);
}

/// "N samples in T s (R samples/s)": the network and sampler time of draw_samples, end to end.
void log_rate(int64_t num, std::chrono::steady_clock::time_point start) {
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  char line[160];
  std::snprintf(line, sizeof(line), "%ld samples drawn in %.2f s (%.1f samples/s)", static_cast<long>(num), s,
                s > 0 ? static_cast<double>(num) / s : 0.0);
  log::info("sample", line);
}

void check_guidance(const SampleConfig& c, const models::Network& net) {
  UD_CHECK_INPUT(net.num_classes() > 0 || (c.label < 0 && c.cfg_scale == 1.0),
                 "--label and --cfg_scale need a class-conditional model; this one is unconditional");
  UD_CHECK_INPUT(c.label < net.num_classes(), "--label ", c.label, " is not a class of the model (0..",
                 net.num_classes() - 1, ")");
}

/// --clip_x0 resolved for samples of `data_shape`: images (data in [-1, 1]) clip by default.
bool clip_x0(const SampleConfig& c, const std::vector<int64_t>& data_shape) {
  UD_CHECK_INPUT(c.clip_x0 == "auto" || c.clip_x0 == "on" || c.clip_x0 == "off",
                 "--clip_x0 must be auto, on or off, got '", c.clip_x0, "'");
  if (c.clip_x0 == "auto") return data_shape.size() == 3;
  return c.clip_x0 == "on";
}

/// A model of a continuous-time objective (rf, ncsn, trigflow, ict, scm; objective.h): its
/// denoiser or consistency function under the samplers it takes. x_T = sigma(t_max) N(0, I),
/// keyed per sample at stream step 0 (reflow pairs regenerate it from that key); sampler step i
/// draws its noise at stream step i + 1.
torch::Tensor sample_continuous(const SampleConfig& c, LoadedModel& m, const DiffusionConfig& diffusion,
                                torch::Device device) {
  prepare_network(c, m, device);
  check_guidance(c, *m.module);
  torch::Tensor labels;  // of the current chunk
  ModelFunctions fns = model_functions(diffusion, [&](const torch::Tensor& x, const torch::Tensor& t) {
    return guided_output(c, *m.module, x, t, labels);
  });
  if (clip_x0(c, m.network.data_shape)) {
    // Every sampler below sees the clamped estimate (the consistency function's output too).
    if (fns.denoise) {
      fns.denoise = [d = fns.denoise](const torch::Tensor& x, double t) { return d(x, t).clamp(-1, 1); };
    }
    if (fns.consistency) {
      fns.consistency = [f = fns.consistency](const torch::Tensor& x, double t) { return f(x, t).clamp(-1, 1); };
    }
  }
  const std::string sampler = c.sampler.empty() ? fns.samplers.front() : c.sampler;
  std::string valid;
  for (const auto& n : fns.samplers) valid += (valid.empty() ? "" : ", ") + n;
  UD_CHECK_INPUT(std::find(fns.samplers.begin(), fns.samplers.end(), sampler) != fns.samplers.end(),
                 "unknown --sampler '", sampler, "' for a ", diffusion.objective, " model (valid: ", valid, ")");
  const objectives::Schedule& sch = fns.schedule;
  const bool consistency = static_cast<bool>(fns.consistency);
  // Defaults: 50 ODE steps or noise levels; one consistency step.
  const int64_t steps = !c.cm_times.empty() ? static_cast<int64_t>(c.cm_times.size())
                                            : c.steps > 0 ? c.steps : (consistency ? 1 : 50);
  UD_CHECK_INPUT(c.cm_times.empty() || consistency, "--cm_times is for consistency models (ict, scm)");
  for (size_t i = 0; i < c.cm_times.size(); ++i) {
    UD_CHECK_INPUT(c.cm_times[i] > sch.t_min && c.cm_times[i] <= sch.t_max &&
                       (i == 0 || c.cm_times[i] < c.cm_times[i - 1]),
                   "--cm_times must decrease within (", sch.t_min, ", ", sch.t_max, "] (the model's times)");
  }
  log::info("sample", detail::str_cat(c.num, " samples of a ", diffusion.objective, " model with ", sampler,
                                      ", ", steps, " steps, ", c.use_ema ? "EMA" : "raw",
                                      " weights of step ", m.step));
  torch::NoGradGuard no_grad;
  const auto start = std::chrono::steady_clock::now();
  std::vector<torch::Tensor> chunks;
  for (int64_t begin = 0; begin < c.num; begin += c.batch) {
    const int64_t end = std::min(c.num, begin + c.batch);
    // On the device once: every step's noise is keyed by it (a host tensor would be copied, and
    // waited for, at every step).
    const torch::Tensor idx = rng::arange_indices(begin, end).to(device);
    const rng::Stream stream{c.seed, rng::Purpose::kSampling};
    const torch::Tensor x_T = sch.sigma(sch.t_max) * rng::normal(stream, 0, idx, m.network.data_shape, device);
    const objectives::NoiseFn noise = [&](int64_t i) {
      return rng::normal(stream, static_cast<uint64_t>(i + 1), idx, m.network.data_shape, device);
    };
    labels = sample_labels(c, *m.module, begin, end, device);
    torch::Tensor x;
    if (sampler == "euler" || sampler == "heun") {
      x = objectives::sample_ode(fns.denoise, sch, x_T, steps,
                                 sampler == "heun" ? objectives::OdeMethod::kHeun : objectives::OdeMethod::kEuler);
    } else if (sampler == "ddim") {
      x = objectives::sample_ddim_any(fns.denoise, sch, x_T, steps, c.eta, noise);
    } else if (sampler == "smld") {
      const double eps_step = c.smld_step * sch.t_min * sch.t_min;  // a_i / sigma_i^2 = smld_step
      x = objectives::sample_smld(fns.denoise, sch, x_T, steps, c.smld_inner, eps_step, noise);
    } else {
      // Multistep consistency sampling (Algorithm 4) at --cm_times, or the first `steps` times of
      // the schedule's grid.
      std::vector<double> times = c.cm_times;
      if (times.empty()) {
        times = sch.time_grid(steps);
        times.pop_back();  // t_min is where the consistency function lands
      }
      x = objectives::sample_multistep(fns.consistency, sch, x_T, times, noise);
    }
    chunks.push_back(x.to(torch::kCPU, torch::kFloat32));
  }
  log_rate(c.num, start);
  return torch::cat(chunks);
}

/// `attrs`: how the samples were drawn (sampling_seed, sampling_objective), for reflow; a
/// conditional model's samples carry the labels they were generated for (evaluation checks them).
void write_samples(const SampleConfig& c, const torch::Tensor& samples, const torch::Tensor& reference,
                   const std::map<std::string, std::string>& attrs = {}, const models::Network* net = nullptr) {
  const int64_t bad = (~torch::isfinite(samples)).sum().item<int64_t>();
  if (bad > 0) log::warn("sample", detail::str_cat(bad, " non-finite values in the samples"));
  if (c.out.empty()) return;
  torch::Tensor labels;
  int64_t k = 0;
  if (net != nullptr && net->num_classes() > 0) {
    labels = sample_labels(c, *net, 0, samples.size(0), torch::kCPU);
    k = net->num_classes();
  }
  data::write_dataset(c.out, samples, labels, k, "unidiff sample " + c.sampler, {}, attrs);
  log::info("sample", "samples written to " + c.out);
  if (samples.dim() == 2 && samples.size(1) == 2) {
    const fs::path png = fs::path(c.out).replace_extension(".png");
    image::write_png(png, image::scatter_plot(samples, reference));
    log::info("sample", "scatter plot written to " + png.string());
  } else if (samples.dim() == 4 && (samples.size(1) == 1 || samples.size(1) == 3)) {
    // Images: a grid of the first 64 (8 per row), clamped to [-1, 1].
    const fs::path png = fs::path(c.out).replace_extension(".png");
    const torch::Tensor shown = samples.slice(0, 0, std::min<int64_t>(64, samples.size(0))).clamp(-1, 1);
    image::write_png(png, image::image_grid(shown, 8));
    log::info("sample", "image grid written to " + png.string());
  }
}

}  // namespace

torch::Tensor run_sample(const SampleConfig& c) {
  UD_CHECK_INPUT(c.model == "checkpoint" || c.model == "gmm", "unknown --model '", c.model,
                 "' (valid: checkpoint, gmm)");
  UD_CHECK_INPUT(c.num > 0, "--num must be positive, got ", c.num);
  UD_CHECK_INPUT(c.batch > 0, "--batch must be positive, got ", c.batch);
  torch::Tensor reference;
  if (!c.plot_reference.empty()) reference = data::TensorDataset::load(c.plot_reference).all();
  if (!c.out.empty()) {
    const fs::path parent = fs::path(c.out).parent_path();
    UD_CHECK_INPUT(parent.empty() || fs::is_directory(parent), "the folder of --out '", c.out,
                   "' does not exist");
  }
  if (c.model == "gmm") {
    torch::Tensor samples = run_oracle_sample(c);
    write_samples(c, samples, reference);
    return samples;
  }
  UD_CHECK_INPUT(!c.checkpoint.empty(), "--checkpoint is required (a run directory or model file)");
  LoadedModel m = load_model(c.checkpoint, c.use_ema);
  const torch::Device device = dist::select_device();
  dist::configure_threads(c.threads);
  torch::Tensor samples = draw_samples(c, m, device);
  const std::map<std::string, std::string> attrs = {{"sampling_seed", std::to_string(c.seed)},
                                                    {"sampling_objective", resolve_diffusion(m.diffusion).objective}};
  write_samples(c, samples, reference, attrs, m.module.get());
  return samples;
}

torch::Tensor draw_samples(const SampleConfig& c, LoadedModel& m, torch::Device device) {
  UD_CHECK_INPUT(c.num > 0 && c.batch > 0, "the number of samples and the batch must be positive");
  const DiffusionConfig diffusion = resolve_diffusion(m.diffusion);
  if (diffusion.objective != "ddpm") return sample_continuous(c, m, diffusion, device);
  const std::string sampler = c.sampler.empty() ? "ddpm" : c.sampler;
  UD_CHECK_INPUT(std::find(sampler_names().begin(), sampler_names().end(), sampler) !=
                     sampler_names().end(),
                 "unknown --sampler '", sampler, "' for a DDPM model (valid: ddpm, ddim)");
  const objectives::Spacing spacing = objectives::parse_spacing(c.spacing);
  const bool clip = clip_x0(c, m.network.data_shape);
  const objectives::DdpmSchedule schedule = objectives::DdpmSchedule::make(
      objectives::parse_beta_schedule(m.diffusion.schedule), m.diffusion.timesteps,
      m.diffusion.beta_start, m.diffusion.beta_end);
  const int64_t steps = c.steps > 0 ? c.steps : schedule.num_steps;
  UD_CHECK_INPUT(steps <= schedule.num_steps, "--steps ", steps, " exceeds the model's T = ",
                 schedule.num_steps);
  prepare_network(c, m, device);
  // The samplers take eps; x0- and v-prediction networks are converted (parameterization.h).
  const objectives::Prediction prediction = objectives::parse_prediction(m.diffusion.prediction);
  const objectives::Schedule unified = objectives::Schedule::from_ddpm(schedule);
  check_guidance(c, *m.module);
  torch::Tensor labels;  // of the current chunk
  auto eps_fn = [&](const torch::Tensor& x, const torch::Tensor& t) {
    const torch::Tensor out = guided_output(c, *m.module, x, t.to(torch::kFloat32), labels);
    if (prediction == objectives::Prediction::kEps) return out;
    return objectives::from_prediction(prediction, out, x, t.to(torch::kCPU, torch::kFloat64), unified)
        .eps.to(out.dtype());
  };
  log::info("sample", detail::str_cat(c.num, " samples with ", sampler, ", ", steps, " of T = ",
                                      schedule.num_steps, " steps (", c.spacing, "), ",
                                      c.use_ema ? "EMA" : "raw", " weights of step ", m.step));
  const auto start = std::chrono::steady_clock::now();
  std::vector<torch::Tensor> chunks;
  for (int64_t begin = 0; begin < c.num; begin += c.batch) {
    const int64_t end = std::min(c.num, begin + c.batch);
    const torch::Tensor idx = rng::arange_indices(begin, end).to(device);  // once: keys every step's noise
    labels = sample_labels(c, *m.module, begin, end, device);
    const rng::Stream stream{c.seed, rng::Purpose::kSampling};
    // Step 0 of the stream is x_T; sampler step i draws its noise at stream step i + 1.
    // Drawn on the device (the keyed generator gives the CPU's bits there).
    const torch::Tensor x_T = rng::normal(stream, 0, idx, m.network.data_shape, device);
    auto noise = [&](int64_t i) {
      return rng::normal(stream, static_cast<uint64_t>(i + 1), idx, m.network.data_shape, device);
    };
    objectives::DdpmSamplerOptions opts;
    opts.steps = steps;
    opts.spacing = spacing;
    opts.clip_x0 = clip;
    torch::Tensor x = sampler == "ddpm"
                          ? objectives::sample_ddpm(eps_fn, schedule, x_T, opts, noise)
                          : objectives::sample_ddim(eps_fn, schedule, x_T, opts, c.eta, noise);
    chunks.push_back(x.to(torch::kCPU));
    if (c.num > c.batch) {
      log::info("sample", detail::str_cat(end, "/", c.num, " samples"));
    }
  }
  log_rate(c.num, start);
  return torch::cat(chunks);
}

}  // namespace unidiff::experiments
