// The model file: a network's architecture, its diffusion settings, its weights and EMA weights,
// in one HDF5 file readable from h5py (`/params/<name>`, `/ema/<name>`, attributes on `/`).
// Full training checkpoints (optimizer, data position, RNG) build on this.
#pragma once

#include <filesystem>
#include <memory>

#include "core/h5.h"
#include "experiments/config.h"
#include "models/ema.h"
#include "models/network.h"

namespace unidiff::experiments {

struct LoadedModel {
  models::NetworkConfig network;
  DiffusionConfig diffusion;
  std::shared_ptr<models::Network> module;  ///< built and filled with the chosen weights
  int64_t step = 0;                         ///< training steps behind the weights
};

/// Writes atomically: a failure never damages an existing file at `path`.
void save_model(const std::filesystem::path& path, const models::NetworkConfig& network,
                const DiffusionConfig& diffusion, const models::Network& module,
                const models::Ema& ema, int64_t step);

/// Copies every parameter of `module` from `group`/<name> of `file` (read from `path`, named in
/// errors); a missing tensor or another shape throws InputError.
void read_parameters(const h5::File& file, const std::filesystem::path& path, const std::string& group,
                     torch::nn::Module& module);

/// Loads `path` (a model file, or a run directory holding model.h5); `use_ema` picks the EMA
/// weights. A missing, truncated or foreign file throws InputError.
LoadedModel load_model(const std::filesystem::path& path, bool use_ema);

}  // namespace unidiff::experiments
