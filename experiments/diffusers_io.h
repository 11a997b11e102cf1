// diffusers interop: `unidiff import --from=diffusers` and `unidiff export --to=diffusers`.
//
// A diffusers DDPM pipeline folder, as DDPMPipeline.save_pretrained writes it:
//   model_index.json                      {"_class_name": "DDPMPipeline", "unet": [...], "scheduler": [...]}
//   unet/config.json                      UNet2DModel's config (models/unet_diffusers.h)
//   unet/diffusion_pytorch_model.safetensors
//   scheduler/scheduler_config.json       DDPMScheduler's (or DDIMScheduler's) config
// or a bare UNet2DModel folder (config.json and the weights; the scheduler is then diffusers'
// DDPMScheduler default: linear betas 1e-4 -> 0.02, T = 1000, epsilon prediction).
//
// The scheduler maps to the model file's diffusion settings: num_train_timesteps = timesteps,
// beta_schedule linear / scaled_linear / squaredcos_cap_v2 = schedule linear / scaled-linear /
// cosine (the same betas: Nichol & Dhariwal's cosine, clipped at 0.999), prediction_type epsilon /
// sample / v_prediction = prediction eps / x0 / v. The network's time input is the DDPM step index
// 0..T-1 in both. Sampler-only keys (variance_type, clip_sample, timestep_spacing, ...) are
// logged and left to `unidiff sample`'s flags.
#pragma once

#include <filesystem>
#include <string>

namespace unidiff::experiments {

struct DiffusersImportConfig {
  std::string from = "diffusers";  ///< the source format (diffusers only)
  std::string dir;                 ///< the pipeline folder or a UNet2DModel folder
  std::string out;                 ///< the unidiff model file to write
};

struct DiffusersExportConfig {
  std::string to = "diffusers";  ///< the target format (diffusers only)
  std::string checkpoint;        ///< a run directory or model file
  std::string dir;               ///< the pipeline folder to write (created; files inside replaced)
  bool use_ema = true;           ///< export the EMA weights (else the raw ones)
};

/// Reads the folder and writes a model file (weights = EMA weights, step 0) that `sample`,
/// `train --init_from` and `--teacher` take. What does not map throws InputError naming the
/// file and the key.
void import_diffusers(const DiffusersImportConfig& config);

/// Writes a DDPMPipeline folder from a unet model of a DDPM objective. Other architectures,
/// objectives or a guidance embedding throw InputError saying why.
void export_diffusers(const DiffusersExportConfig& config);

}  // namespace unidiff::experiments
