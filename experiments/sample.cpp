#include "experiments/sample.h"

#include <ATen/Context.h>

#include <chrono>
#include <cstdio>
#include <filesystem>

#include "core/error.h"
#include "core/h5.h"
#include "core/image.h"
#include "core/log.h"
#include "core/rng.h"
#include "data/dataset.h"
#include "dist/signals.h"
#include "dist/world.h"
#include "experiments/model_io.h"
#include "experiments/pretrain/objectives.h"
#include "experiments/run/progress.h"
#include "objectives/ddpm_schedule.h"
#include "objectives/distill/consistency_distillation.h"
#include "models/gmm.h"
#include "models/group_norm_act.h"
#include "models/precision.h"
#include "models/unet.h"
#include "models/network.h"
#include "objectives/sampling/registry.h"
#include "objectives/parameterization.h"
#include "objectives/schedule.h"

namespace unidiff::experiments {
namespace {

namespace fs = std::filesystem;

/// The mixture oracle as a sampler model: every function the registry's samplers need, exact.
objectives::SamplerModel oracle_model(const SampleConfig& c, const models::GaussianMixture& gmm,
                                      const objectives::Schedule& sch) {
  namespace o = objectives;
  o::SamplerModel m;
  m.schedule = sch;
  m.kind = "the mixture oracle";
  m.denoise = [&gmm, sch](const torch::Tensor& x, double t) {
    return gmm.posterior_mean(x, torch::tensor(sch.alpha(t), torch::kFloat64),
                              torch::tensor(sch.sigma(t), torch::kFloat64));
  };
  const auto x0_at = [&gmm, sch](const torch::Tensor& x, const torch::Tensor& t) {
    const o::Coeffs co = sch.at(t);
    return gmm.posterior_mean(x, co.alpha, co.sigma);
  };
  m.eps = [x0_at, sch](const torch::Tensor& x, const torch::Tensor& t) {
    const torch::Tensor tf = t.to(torch::kFloat64);
    return o::from_prediction(o::Prediction::kX0, x0_at(x, tf), x, tf, sch).eps;
  };
  m.instaflow_w = [x0_at, sch](const torch::Tensor& x, const torch::Tensor& t) {
    const torch::Tensor tf = t.to(torch::kFloat64);
    return o::to_prediction(o::Prediction::kInstaflow, o::from_prediction(o::Prediction::kX0, x0_at(x, tf), x, tf, sch),
                            x, tf, sch);
  };
  // The exact consistency function: closed form for one Gaussian, the ODE otherwise. On ve it
  // ends at sigma = t_min (the CM boundary); elsewhere at the data.
  const bool ve = sch.family == o::ScheduleFamily::kVe;
  const o::ConsistencyFn ode_f = o::ode_consistency(m.denoise, sch, c.oracle_ode_steps);
  m.consistency = [&gmm, sch, ve, ode_f](const torch::Tensor& x, double t) {
    if (gmm.components() == 1) return gmm.ode_map(x, sch.alpha(t), sch.sigma(t), 1.0, ve ? sch.t_min : 0.0);
    return ode_f(x, t);
  };
  return m;
}

objectives::InstaflowVariant instaflow_variant(const std::string& v) {
  if (v == "posterior") return objectives::InstaflowVariant::kPosterior;
  if (v == "simple") return objectives::InstaflowVariant::kSimple;
  UD_CHECK_INPUT(v == "ddim", "unknown --instaflow_variant '", v, "' (valid: posterior, simple, ddim)");
  return objectives::InstaflowVariant::kDdim;
}

/// The sampler options of a SampleConfig; `spacing` resolved by the caller.
objectives::SamplerOptions sampler_options(const SampleConfig& c, const std::string& spacing, int64_t steps) {
  objectives::SamplerOptions o;
  o.steps = steps;
  o.spacing = objectives::parse_spacing(spacing.empty() ? "leading" : spacing);
  o.eta = c.eta.value_or(0.0);
  o.times = c.cm_times;
  o.smld_inner = c.smld_inner;
  o.smld_step = c.smld_step;
  o.instaflow = instaflow_variant(c.instaflow_variant);
  return o;
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
  const objectives::SamplerModel model = oracle_model(c, gmm, sch);
  const objectives::SamplerSpec& spec = objectives::select_sampler(c.sampler, model);
  if (sch.family == objectives::ScheduleFamily::kDdpm) {
    UD_CHECK_INPUT(c.steps <= sch.ddpm.num_steps, "--steps ", c.steps, " exceeds T = ", sch.ddpm.num_steps);
  }
  const torch::Tensor idx = rng::arange_indices(begin, end);
  const rng::Stream stream{c.seed, rng::Purpose::kSampling};
  const std::vector<int64_t> shape{gmm.dim()};
  const objectives::NoiseFn noise = [&](int64_t i) {
    return rng::normal(stream, static_cast<uint64_t>(i + 1), idx, shape).to(torch::kFloat64);
  };
  const torch::Tensor x_T = sch.sigma(sch.t_max) * rng::normal(stream, 0, idx, shape).to(torch::kFloat64);
  torch::NoGradGuard no_grad;
  return objectives::run_sampler(spec, model, x_T, sampler_options(c, c.spacing, c.steps), noise)
      .to(torch::kFloat32);
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
  if (net.guided()) {  // one call at w (a guidance-conditioned network, LCM or guided distillation)
    const models::AutocastScope autocast(x.device().type(), c.precision);
    const torch::Tensor w = torch::full({x.size(0)}, c.cfg_scale, x.options().dtype(torch::kFloat32));
    return net.forward_guided(models::to_layout(x, c.channels_last), t, labels, w).to(torch::kFloat32).contiguous();
  }
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

/// A trained network as a sampler model, its labels read from `labels` (the current chunk's):
/// a DDPM model gives eps at code indices (x0 and v networks converted); the continuous objectives
/// their denoiser or consistency function (experiments/pretrain/objectives.h). Every x0 estimate
/// is clamped to [-1, 1] with --clip_x0.
objectives::SamplerModel trained_model(const SampleConfig& c, LoadedModel& m, const DiffusionConfig& diffusion,
                                       const torch::Tensor& labels) {
  namespace o = objectives;
  models::Network& net = *m.module;
  const bool clip = clip_x0(c, m.network.data_shape);
  o::SamplerModel model;
  if (diffusion.objective == "ddpm") {
    const o::DdpmSchedule tables = o::DdpmSchedule::make(o::parse_beta_schedule(diffusion.schedule),
                                                         diffusion.timesteps, diffusion.beta_start, diffusion.beta_end);
    model.schedule = o::Schedule::from_ddpm(tables);
    model.kind = "a DDPM model";
    model.samplers = {"ddpm", "ddim"};
    // The samplers take eps; x0- and v-prediction networks are converted (parameterization.h).
    const o::Prediction prediction = o::parse_prediction(diffusion.prediction);
    const o::Schedule unified = model.schedule;
    model.eps = [&c, &net, &labels, prediction, unified](const torch::Tensor& x, const torch::Tensor& t) {
      const torch::Tensor out = guided_output(c, net, x, t.to(torch::kFloat32), labels);
      if (prediction == o::Prediction::kEps) return out;
      return o::from_prediction(prediction, out, x, t.to(torch::kCPU, torch::kFloat64), unified).eps.to(out.dtype());
    };
    if (prediction == o::Prediction::kInstaflow) {
      // InstaFlow's w-prediction (FORMULAS (32)-(33)): its own samplers (Algorithms 6-8) read the
      // network's w directly; the others its eps.
      model.samplers = {"instaflow", "ddim", "ddpm"};
      model.instaflow_w = [&c, &net, &labels](const torch::Tensor& x, const torch::Tensor& t) {
        return guided_output(c, net, x, t.to(torch::kFloat32), labels);
      };
    }
    if (diffusion.sampler == "lcm") {
      // A few-step generator (DMD, ADD) or a consistency model (CD, LCM): LCM's consistency
      // function of its x0 at a code index, c_skip(t) x + c_out(t) x0 (c_skip is below 1e-5 from
      // t = 20 on: a generator's x0 itself), sampled by multistep consistency sampling at the
      // trailing steps (lcm).
      model.samplers = {"lcm", "ddpm", "ddim"};
      model.consistency = [&c, &net, &labels, prediction, unified, clip](const torch::Tensor& x, double t) {
        const torch::Tensor tt = torch::full({x.size(0)}, t, x.options().dtype(torch::kFloat32));
        const torch::Tensor out = guided_output(c, net, x, tt, labels);
        torch::Tensor x0 = prediction == o::Prediction::kX0
                               ? out
                               : o::from_prediction(prediction, out, x, tt.to(torch::kCPU, torch::kFloat64), unified)
                                     .x0.to(out.dtype());
        if (clip) x0 = x0.clamp(-1, 1);
        return o::lcm_consistency(x, x0, tt).to(x0.dtype());
      };
    }
    return model;
  }
  ModelFunctions fns = model_functions(diffusion, [&c, &net, &labels](const torch::Tensor& x, const torch::Tensor& t) {
    return guided_output(c, net, x, t, labels);
  });
  model.schedule = fns.schedule;
  model.kind = "a " + diffusion.objective + " model";
  model.samplers = fns.samplers;
  model.denoise = fns.denoise;
  model.consistency = fns.consistency;
  if (clip) {
    // Every sampler below sees the clamped estimate (the consistency function's output too).
    if (model.denoise) {
      model.denoise = [d = model.denoise](const torch::Tensor& x, double t) { return d(x, t).clamp(-1, 1); };
    }
    if (model.consistency) {
      model.consistency = [f = model.consistency](const torch::Tensor& x, double t) { return f(x, t).clamp(-1, 1); };
    }
  }
  model.default_steps = model.consistency ? 1 : 50;  // one consistency step; 50 ODE steps or noise levels
  return model;
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

/// The eta the sampler runs with: --eta, else the model's own when its own sampler runs, else 0.
double sample_eta(const SampleConfig& c, const DiffusionConfig& d) {
  if (c.eta) return *c.eta;
  const bool own = !d.sampler.empty() && (c.sampler.empty() || c.sampler == d.sampler);
  return own ? d.sampler_eta.value_or(0.0) : 0.0;
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
  // How the samples were drawn: reflow and DMD's pairs regenerate each one's noise from its key
  // and need to know the sampler was deterministic.
  const DiffusionConfig d = resolve_diffusion(m.diffusion);
  std::string sampler = c.sampler.empty() ? d.sampler : c.sampler;
  if (sampler.empty()) {
    sampler = d.objective == "ddpm"
                  ? (d.prediction == "instaflow" ? "instaflow" : "ddpm")
                  : model_functions(d, [](const torch::Tensor& x, const torch::Tensor&) { return x; }).samplers.front();
  }
  const std::map<std::string, std::string> attrs = {{"sampling_seed", std::to_string(c.seed)},
                                                    {"sampling_objective", d.objective},
                                                    {"sampling_sampler", sampler},
                                                    {"sampling_eta", settings::format_double(sample_eta(c, m.diffusion))}};
  write_samples(c, samples, reference, attrs, m.module.get());
  return samples;
}

torch::Tensor draw_samples(const SampleConfig& c, LoadedModel& m, torch::Device device, bool stop_on_signal) {
  UD_CHECK_INPUT(c.num > 0 && c.batch > 0, "the number of samples and the batch must be positive");
  const DiffusionConfig diffusion = resolve_diffusion(m.diffusion);
  torch::Tensor labels;  // of the current chunk
  objectives::SamplerModel model = trained_model(c, m, diffusion, labels);
  // The model's own sampler, steps and spacing (a distilled student records them) unless asked.
  const std::string asked = c.sampler.empty() ? diffusion.sampler : c.sampler;
  const objectives::SamplerSpec& spec = objectives::select_sampler(asked, model);
  const bool own = !diffusion.sampler.empty() && spec.name == diffusion.sampler;
  const int64_t steps_asked = c.steps > 0 ? c.steps : own ? diffusion.sampler_steps : 0;
  const std::string spacing = !c.spacing.empty() ? c.spacing : own ? diffusion.sampler_spacing : "";
  objectives::SamplerOptions options = sampler_options(c, spacing, steps_asked);
  options.eta = sample_eta(c, diffusion);
  options.grid = spec.name == "lcm" ? diffusion.sampler_grid : 0;
  options.clip_x0 = clip_x0(c, m.network.data_shape);
  const objectives::Schedule& sch = model.schedule;
  const bool ddpm = diffusion.objective == "ddpm";
  const int64_t steps = objectives::sampler_steps(model, options);
  if (ddpm) {
    UD_CHECK_INPUT(steps <= sch.ddpm.num_steps, "--steps ", steps, " exceeds the model's T = ", sch.ddpm.num_steps);
  } else {
    UD_CHECK_INPUT(c.cm_times.empty() || model.consistency, "--cm_times is for consistency models (ict, scm)");
    for (size_t i = 0; i < c.cm_times.size(); ++i) {
      UD_CHECK_INPUT(c.cm_times[i] > sch.t_min && c.cm_times[i] <= sch.t_max &&
                         (i == 0 || c.cm_times[i] < c.cm_times[i - 1]),
                     "--cm_times must decrease within (", sch.t_min, ", ", sch.t_max, "] (the model's times)");
    }
  }
  prepare_network(c, m, device);
  check_guidance(c, *m.module);
  if (ddpm) {
    // lcm walks the trailing steps whatever --spacing says; the others take the spacing.
    const std::string where = spec.name != "lcm" ? (spacing.empty() ? "leading" : spacing)
                              : options.grid > 0 ? detail::str_cat("trailing, on the ", options.grid, "-step grid")
                                                 : std::string("trailing");
    log::info("sample", detail::str_cat(c.num, " samples with ", spec.name, ", ", steps, " of T = ",
                                        sch.ddpm.num_steps, " steps (", where, "), ",
                                        options.eta > 0 ? detail::str_cat("eta ", options.eta, ", ") : std::string(),
                                        c.use_ema ? "EMA" : "raw",
                                        " weights of step ", m.step));
  } else {
    log::info("sample", detail::str_cat(c.num, " samples of a ", diffusion.objective, " model with ", spec.name, ", ",
                                        steps, " steps, ", c.use_ema ? "EMA" : "raw", " weights of step ", m.step));
  }
  // x_T = sigma(t_max) N(0, I) on the continuous schedules; N(0, I) on DDPM tables.
  const double scale = ddpm ? 1.0 : sch.sigma(sch.t_max);
  torch::NoGradGuard no_grad;
  const auto start = std::chrono::steady_clock::now();
  // Progress in samples, advanced inside a chunk by the network evaluations made so far (each
  // model function counts its calls; a chunk is expected to take `per_chunk` of them): a chunk of
  // 1,000 DDPM steps on a CPU takes minutes, and says so every 10 s with a rate and an ETA.
  Progress progress("sample", "samples", c.num);
  const double per_chunk = static_cast<double>(std::max<int64_t>(1, steps)) *
                           (spec.name == "heun" ? 2.0 : spec.name == "smld" ? static_cast<double>(options.smld_inner) : 1.0);
  int64_t evaluations = 0, chunk_begin = 0, chunk_end = 0;
  const auto counted = [&](auto fn) {
    return [&, fn](const auto&... args) {
      ++evaluations;
      progress.update(static_cast<double>(chunk_begin) +
                      static_cast<double>(chunk_end - chunk_begin) * std::min(1.0, evaluations / per_chunk));
      return fn(args...);
    };
  };
  if (model.eps) model.eps = counted(model.eps);
  if (model.denoise) model.denoise = counted(model.denoise);
  if (model.consistency) model.consistency = counted(model.consistency);
  if (model.instaflow_w) model.instaflow_w = counted(model.instaflow_w);
  std::vector<torch::Tensor> chunks;
  for (int64_t begin = 0; begin < c.num; begin += c.batch) {
    if (stop_on_signal && dist::stop_signal_number() != 0) throw SamplingStopped();
    const int64_t end = std::min(c.num, begin + c.batch);
    chunk_begin = begin;
    chunk_end = end;
    evaluations = 0;
    // On the device once: every step's noise is keyed by it (a host tensor would be copied, and
    // waited for, at every step).
    const torch::Tensor idx = rng::arange_indices(begin, end).to(device);
    labels = sample_labels(c, *m.module, begin, end, device);
    const rng::Stream stream{c.seed, rng::Purpose::kSampling};
    // Step 0 of the stream is x_T (reflow pairs regenerate it from that key); sampler step i draws
    // its noise at stream step i + 1. Drawn on the device (the CPU's bits there).
    torch::Tensor x_T = rng::normal(stream, 0, idx, m.network.data_shape, device);
    if (scale != 1.0) x_T = scale * x_T;
    const objectives::NoiseFn noise = [&](int64_t i) {
      return rng::normal(stream, static_cast<uint64_t>(i + 1), idx, m.network.data_shape, device);
    };
    chunks.push_back(objectives::run_sampler(spec, model, x_T, options, noise).to(torch::kCPU, torch::kFloat32));
    progress.update(static_cast<double>(end));
  }
  log_rate(c.num, start);
  return torch::cat(chunks);
}

std::string PairsSource::describe() const {
  return detail::str_cat(sampler, sampler == "ddim" ? " (eta 0)" : "", " samples of a ", objective, " model, noise key ",
                         seed);
}

PairsSource deterministic_pairs(const std::string& path, const std::string& flag) {
  UD_CHECK_INPUT(std::filesystem::is_regular_file(path), flag, " needs one samples file from 'unidiff sample', got '", path, "'");
  const h5::File f = h5::File::open_read(path);
  const auto seed = h5::read_attr_string(f, "/", "sampling_seed");
  const auto objective = h5::read_attr_string(f, "/", "sampling_objective");
  const auto sampler = h5::read_attr_string(f, "/", "sampling_sampler");
  const auto eta = h5::read_attr_string(f, "/", "sampling_eta");
  UD_CHECK_INPUT(seed && objective && sampler && eta, "'", path, "' is not a samples file written by 'unidiff sample' ",
                 "(no sampling_seed / sampling_objective / sampling_sampler / sampling_eta attributes): ", flag,
                 " cannot regenerate its noise");
  const bool ode = *sampler == "euler" || *sampler == "heun";
  UD_CHECK_INPUT(ode || (*sampler == "ddim" && std::stod(*eta) == 0.0), "'", path, "' was drawn by ", *sampler,
                 " with eta ", *eta, ": a stochastic sampler's sample is not a function of its noise; ", flag,
                 " takes pairs of a deterministic one (euler, heun, or ddim with --eta=0)");
  return {static_cast<uint32_t>(std::stoul(*seed)), *objective, *sampler};
}

}  // namespace unidiff::experiments
