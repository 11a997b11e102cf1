#include "experiments/sample.h"

#include <filesystem>

#include "core/error.h"
#include "core/image.h"
#include "core/log.h"
#include "core/rng.h"
#include "data/dataset.h"
#include "dist/world.h"
#include "experiments/model_io.h"
#include "objectives/ddpm_schedule.h"
#include "objectives/samplers.h"

namespace unidiff::experiments {
namespace {

namespace fs = std::filesystem;

const std::vector<std::string>& sampler_names() {
  static const std::vector<std::string> names = {"ddpm", "ddim"};
  return names;
}

}  // namespace

torch::Tensor run_sample(const SampleConfig& c) {
  UD_CHECK_INPUT(std::find(sampler_names().begin(), sampler_names().end(), c.sampler) !=
                     sampler_names().end(),
                 "unknown --sampler '", c.sampler, "' for a DDPM model (valid: ddpm, ddim)");
  UD_CHECK_INPUT(c.num > 0, "--num must be positive, got ", c.num);
  UD_CHECK_INPUT(c.batch > 0, "--batch must be positive, got ", c.batch);
  UD_CHECK_INPUT(!c.checkpoint.empty(), "--checkpoint is required (a run directory or model file)");
  const objectives::Spacing spacing = objectives::parse_spacing(c.spacing);
  LoadedModel m = load_model(c.checkpoint, c.use_ema);
  const objectives::DdpmSchedule schedule = objectives::DdpmSchedule::make(
      objectives::parse_beta_schedule(m.diffusion.schedule), m.diffusion.timesteps,
      m.diffusion.beta_start, m.diffusion.beta_end);
  const int64_t steps = c.steps > 0 ? c.steps : schedule.num_steps;
  UD_CHECK_INPUT(steps <= schedule.num_steps, "--steps ", steps, " exceeds the model's T = ",
                 schedule.num_steps);
  torch::Tensor reference;
  if (!c.plot_reference.empty()) reference = data::TensorDataset::load(c.plot_reference).all();
  if (!c.out.empty()) {
    const fs::path parent = fs::path(c.out).parent_path();
    UD_CHECK_INPUT(parent.empty() || fs::is_directory(parent), "the folder of --out '", c.out,
                   "' does not exist");
  }

  const torch::Device device = dist::select_device();
  dist::configure_threads();
  m.module->to(device);
  m.module->eval();
  auto eps_fn = [&](const torch::Tensor& x, const torch::Tensor& t) {
    return m.module->forward(x, t.to(torch::kFloat32));
  };
  log::info("sample", detail::str_cat(c.num, " samples with ", c.sampler, ", ", steps, " of T = ",
                                      schedule.num_steps, " steps (", c.spacing, "), ",
                                      c.use_ema ? "EMA" : "raw", " weights of step ", m.step));
  std::vector<torch::Tensor> chunks;
  for (int64_t begin = 0; begin < c.num; begin += c.batch) {
    const int64_t end = std::min(c.num, begin + c.batch);
    const torch::Tensor idx = rng::arange_indices(begin, end);
    const rng::Stream stream{c.seed, rng::Purpose::kSampling};
    // Step 0 of the stream is x_T; sampler step i draws its noise at stream step i + 1.
    const torch::Tensor x_T = rng::normal(stream, 0, idx, m.network.data_shape).to(device);
    auto noise = [&](int64_t i) {
      return rng::normal(stream, static_cast<uint64_t>(i + 1), idx, m.network.data_shape);
    };
    objectives::DdpmSamplerOptions opts;
    opts.steps = steps;
    opts.spacing = spacing;
    torch::Tensor x = c.sampler == "ddpm"
                          ? objectives::sample_ddpm(eps_fn, schedule, x_T, opts, noise)
                          : objectives::sample_ddim(eps_fn, schedule, x_T, opts, c.eta, noise);
    chunks.push_back(x.to(torch::kCPU));
    if (c.num > c.batch) {
      log::info("sample", detail::str_cat(end, "/", c.num, " samples"));
    }
  }
  torch::Tensor samples = torch::cat(chunks);
  const int64_t bad = (~torch::isfinite(samples)).sum().item<int64_t>();
  if (bad > 0) log::warn("sample", detail::str_cat(bad, " non-finite values in the samples"));
  if (!c.out.empty()) {
    data::write_dataset(c.out, samples, {}, 0, "unidiff sample " + c.sampler);
    log::info("sample", "samples written to " + c.out);
    if (samples.dim() == 2 && samples.size(1) == 2) {
      const fs::path png = fs::path(c.out).replace_extension(".png");
      image::write_png(png, image::scatter_plot(samples, reference));
      log::info("sample", "scatter plot written to " + png.string());
    }
  }
  return samples;
}

}  // namespace unidiff::experiments
