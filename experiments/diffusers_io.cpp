// experiments/diffusers_io.h.
#include "experiments/diffusers_io.h"

#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/fs.h"
#include "core/json_fields.h"
#include "core/log.h"
#include "core/safetensors.h"
#include "experiments/model_io.h"
#include "experiments/pretrain/objectives.h"
#include "models/unet.h"
#include "models/unet_diffusers.h"

namespace unidiff::experiments {
namespace {

namespace sfs = std::filesystem;
using nlohmann::json;
namespace ud = models::diffusers;

constexpr const char* kWeights = "diffusion_pytorch_model.safetensors";

/// A JSON file of at most 16 MiB; a missing, oversized or malformed file throws InputError naming it.
json read_json(const sfs::path& path) {
  std::error_code ec;
  const auto size = sfs::file_size(path, ec);
  UD_CHECK_INPUT(!ec, "cannot read '", path.string(), "': ", ec.message());
  UD_CHECK_INPUT(size <= (16u << 20), "'", path.string(), "' is ", size, " bytes; a config file is expected");
  std::ifstream in(path, std::ios::binary);
  UD_CHECK_INPUT(in.good(), "cannot open '", path.string(), "'");
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    UD_FAIL_INPUT("'", path.string(), "' is not valid JSON: ", e.what());
  }
}

void write_json(const sfs::path& path, const nlohmann::ordered_json& j) {
  fs::write_text_atomically(path, j.dump(2) + "\n");
}

/// diffusers' names <-> unidiff's, one table per setting, read in both directions.
using NameTable = std::vector<std::pair<std::string, std::string>>;  // {diffusers, unidiff}
const NameTable kBetaSchedules = {{"linear", "linear"}, {"scaled_linear", "scaled-linear"},
                                  {"squaredcos_cap_v2", "cosine"}};
const NameTable kPredictions = {{"epsilon", "eps"}, {"sample", "x0"}, {"v_prediction", "v"}};

std::vector<std::string> diffusers_names(const NameTable& t) {
  std::vector<std::string> out;
  for (const auto& [theirs, ours] : t) out.push_back(theirs);
  return out;
}
std::string ours_of(const NameTable& t, const std::string& theirs) {
  for (const auto& [a, b] : t) {
    if (a == theirs) return b;
  }
  UD_ASSERT(false, "no unidiff name for '", theirs, "'");
  return {};
}
std::string theirs_of(const NameTable& t, const std::string& ours, const std::string& what) {
  for (const auto& [a, b] : t) {
    if (b == ours) return a;
  }
  UD_FAIL_INPUT(what, " '", ours, "' has no diffusers equivalent");
}

/// The scheduler's config -> the model file's diffusion settings (see diffusers_io.h).
DiffusionConfig diffusion_from_scheduler(const json& s, const std::string& what) {
  JsonFields c(s, what, "a unidiff DDPM model");
  DiffusionConfig d;
  d.objective = "ddpm";
  if (const json* k = c.get("_class_name")) {
    if (!k->is_string() || k->get<std::string>().find("Scheduler") == std::string::npos) {
      c.refuse("_class_name", "a diffusers scheduler class is expected");
    }
  }
  d.timesteps = c.integer("num_train_timesteps", d.timesteps);
  if (d.timesteps < 2 || d.timesteps > 100000) c.refuse("num_train_timesteps", "2..100000 steps");
  for (const auto& [key, field] : {std::pair<const char*, double*>{"beta_start", &d.beta_start},
                                   std::pair<const char*, double*>{"beta_end", &d.beta_end}}) {
    *field = c.real(key, *field);
    if (!(*field > 0 && *field < 1)) c.refuse(key, "0 < beta < 1");
  }
  if (c.get("trained_betas") != nullptr) c.refuse("trained_betas", "an explicit beta table is not imported");
  d.schedule = ours_of(kBetaSchedules, c.one_of("beta_schedule", diffusers_names(kBetaSchedules),
                                                "linear, scaled_linear or squaredcos_cap_v2 map"));
  d.prediction = ours_of(kPredictions, c.one_of("prediction_type", diffusers_names(kPredictions),
                                                "epsilon, sample or v_prediction map"));
  c.must_be("rescale_betas_zero_snr", false, "zero-terminal-SNR rescaling is not a unidiff schedule");
  std::string left;
  for (const auto& key : c.unread()) left += (left.empty() ? "" : ", ") + key + "=" + s.at(key).dump();
  if (!left.empty()) log::info("import", "sampler settings left to `unidiff sample`'s flags: " + left);
  return d;
}

nlohmann::ordered_json scheduler_config(const DiffusionConfig& d) {
  nlohmann::ordered_json j;
  j["_class_name"] = "DDPMScheduler";
  j["_diffusers_version"] = ud::kVersion;
  j["beta_end"] = d.beta_end;
  j["beta_schedule"] = theirs_of(kBetaSchedules, d.schedule, "schedule");
  j["beta_start"] = d.beta_start;
  j["clip_sample"] = true;
  j["clip_sample_range"] = 1.0;
  j["num_train_timesteps"] = d.timesteps;
  j["prediction_type"] = theirs_of(kPredictions, d.prediction, "prediction");
  j["rescale_betas_zero_snr"] = false;
  j["steps_offset"] = 0;
  j["timestep_spacing"] = "leading";
  j["trained_betas"] = nullptr;
  j["variance_type"] = "fixed_small";
  return j;
}

}  // namespace

void import_diffusers(const DiffusersImportConfig& c) {
  UD_CHECK_INPUT(c.from == "diffusers", "--from=", c.from, " is not a format unidiff imports (valid: diffusers)");
  UD_CHECK_INPUT(!c.dir.empty(), "--dir is required (a diffusers pipeline folder or UNet2DModel folder)");
  UD_CHECK_INPUT(!c.out.empty(), "--out is required (the unidiff model file to write)");
  const sfs::path dir = c.dir;
  UD_CHECK_INPUT(sfs::is_directory(dir), "--dir '", c.dir, "' is not a folder");
  sfs::path unet_dir, scheduler_file;
  if (sfs::exists(dir / "model_index.json")) {
    const json index = read_json(dir / "model_index.json");
    UD_CHECK_INPUT(index.is_object(), "'", (dir / "model_index.json").string(), "' is not a JSON object");
    if (const auto u = index.find("unet"); u != index.end()) {
      UD_CHECK_INPUT(*u == json::array({"diffusers", "UNet2DModel"}), "'", (dir / "model_index.json").string(),
                     "': unet = ", u->dump(), "; only diffusers' UNet2DModel is imported");
    }
    log::info("import", "pipeline " + index.value("_class_name", std::string("(no class)")) + " in " + dir.string());
    unet_dir = dir / "unet";
    scheduler_file = dir / "scheduler" / "scheduler_config.json";
  } else if (sfs::exists(dir / "unet" / "config.json")) {
    unet_dir = dir / "unet";
    scheduler_file = dir / "scheduler" / "scheduler_config.json";
  } else {
    UD_CHECK_INPUT(sfs::exists(dir / "config.json"), "'", c.dir, "' has neither model_index.json (a pipeline), ",
                   "unet/config.json nor config.json (a UNet2DModel folder)");
    unet_dir = dir;
  }
  const sfs::path config_file = unet_dir / "config.json";
  UD_CHECK_INPUT(sfs::exists(config_file), "'", config_file.string(), "' is missing");
  const models::UnetOptions options = ud::unet_options_from_config(read_json(config_file), "'" + config_file.string() + "'");
  sfs::path weights = unet_dir / kWeights;
  if (!sfs::exists(weights) && sfs::exists(unet_dir / "diffusion_pytorch_model.fp16.safetensors")) {
    weights = unet_dir / "diffusion_pytorch_model.fp16.safetensors";
  }
  if (!sfs::exists(weights)) {
    UD_CHECK_INPUT(!sfs::exists(unet_dir / "diffusion_pytorch_model.bin"), "'", unet_dir.string(),
                   "' holds its weights as diffusion_pytorch_model.bin (a Python pickle, which unidiff does not ",
                   "execute); save them as safetensors first: UNet2DModel.from_pretrained(DIR).save_pretrained(DIR)");
    UD_FAIL_INPUT("'", weights.string(), "' is missing", sfs::exists(unet_dir / (std::string(kWeights) + ".index.json"))
                                                             ? " (sharded weights are not imported)"
                                                             : "");
  }
  DiffusionConfig diffusion;
  if (!scheduler_file.empty() && sfs::exists(scheduler_file)) {
    diffusion = diffusion_from_scheduler(read_json(scheduler_file), "'" + scheduler_file.string() + "'");
  } else {
    diffusion.objective = "ddpm";
    log::info("import", "no scheduler config: diffusers' DDPMScheduler defaults (linear betas 1e-4 -> 0.02, "
                        "T = 1000, epsilon prediction)");
  }
  diffusion.class_conditional = options.num_classes > 0;

  log::info("import", "reading " + weights.string());
  const safetensors::File file = safetensors::read(weights);
  const auto params = ud::parameters_from_diffusers(options, file.tensors, "'" + weights.string() + "'");

  models::NetworkConfig net;
  net.arch = "unet";
  net.data_shape = {options.in_channels, options.resolution, options.resolution};
  net.channels = options.channels;
  net.channel_mult = options.mult;
  net.res_blocks = options.res_blocks;
  net.attn_res = options.attn_res;
  net.dropout = options.dropout;
  net.num_classes = options.num_classes;
  net.norm_eps = options.norm_eps;
  net.downsample_padding = options.downsample_padding;
  net.attn_head_dim = options.attn_head_dim;
  net.time_flip = options.time_flip ? 1 : 0;
  net.time_shift = options.time_shift;
  const auto module = models::make_network(net);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : module->named_parameters()) p.value().copy_(params.at(p.key()));
  }
  const models::Ema ema(*module, 0.9999);  // shadow = the imported weights
  int64_t count = 0;
  for (const auto& p : module->parameters()) count += p.numel();
  save_model(c.out, net, diffusion, *module, ema, 0);
  log::info("import", detail::str_cat("wrote ", c.out, ": unet of ", count, " parameters (", file.tensors.size(),
                                      " diffusers tensors), ", diffusion.schedule, " schedule, T = ", diffusion.timesteps,
                                      ", ", diffusion.prediction, " prediction, images ", options.in_channels, "x",
                                      options.resolution, "x", options.resolution,
                                      options.num_classes > 0 ? detail::str_cat(", ", options.num_classes, " classes")
                                                              : std::string()));
}

void export_diffusers(const DiffusersExportConfig& c) {
  UD_CHECK_INPUT(c.to == "diffusers", "--to=", c.to, " is not a format unidiff exports (valid: diffusers)");
  UD_CHECK_INPUT(!c.checkpoint.empty(), "--checkpoint is required (a run directory or model file)");
  UD_CHECK_INPUT(!c.dir.empty(), "--dir is required (the diffusers folder to write)");
  const LoadedModel m = load_model(c.checkpoint, c.use_ema);
  const auto* unet = dynamic_cast<const models::UnetImpl*>(m.module.get());
  UD_CHECK_INPUT(unet != nullptr, "'", c.checkpoint, "' holds a network of arch '", m.network.arch,
                 "'; diffusers' UNet2DModel is unidiff's unet (--model_arch=unet)");
  const DiffusionConfig& d = m.diffusion;
  const Objective objective = resolve_objective(d);
  UD_CHECK_INPUT(objective == Objective::kDdpm && d.schedule != "rf", "'", c.checkpoint,
                 "' was trained with objective '", to_string(objective), "' (schedule ", d.schedule,
                 "); a DDPMPipeline samples DDPM objectives only");
  const auto scheduler = scheduler_config(d);  // refuses a prediction diffusers has no name for
  const auto config = ud::unet_config(unet->options);
  std::vector<std::pair<std::string, torch::Tensor>> ours;
  for (const auto& p : m.module->named_parameters()) ours.emplace_back(p.key(), p.value());
  const auto theirs = ud::parameters_to_diffusers(unet->options, ours);

  const sfs::path dir = c.dir;
  sfs::create_directories(dir / "unet");
  sfs::create_directories(dir / "scheduler");
  safetensors::write(dir / "unet" / kWeights, theirs, {{"format", "pt"}});
  write_json(dir / "unet" / "config.json", config);
  write_json(dir / "scheduler" / "scheduler_config.json", scheduler);
  nlohmann::ordered_json index;
  index["_class_name"] = "DDPMPipeline";
  index["_diffusers_version"] = ud::kVersion;
  index["scheduler"] = {"diffusers", "DDPMScheduler"};
  index["unet"] = {"diffusers", "UNet2DModel"};
  write_json(dir / "model_index.json", index);
  log::info("export", detail::str_cat("wrote ", dir.string(), ": DDPMPipeline with ", theirs.size(), " tensors (",
                                      c.use_ema ? "EMA" : "raw", " weights of step ", m.step, "), ", d.schedule,
                                      " schedule, T = ", d.timesteps, ", ", d.prediction, " prediction"));
}

}  // namespace unidiff::experiments
