// The commands of `unidiff` and the settings of those that only the launcher runs (the
// converters, `ckpt info`). Training, sampling and evaluation declare their settings where they
// live (experiments/); the launcher only lists them per command and parses command lines.
#pragma once

#include <string>
#include <vector>

#include "core/settings.h"
#include "experiments/classifier.h"
#include "experiments/diffusers_io.h"
#include "launcher/cli.h"

namespace unidiff::launcher {

/// Every command, in the order `unidiff --help` lists them.
const std::vector<Command>& commands();
/// The train command's flags that belong to the run (every method takes them).
std::vector<settings::FlagInfo> run_flags();

const settings::Table<experiments::ClassifierTrainConfig>& classifier_settings();

struct ToyDataConfig {
  std::string dist = "moons";
  int64_t num = 2000;
  uint32_t seed = 0;
  std::string out;
  int64_t shards = 1;
};
const settings::Table<ToyDataConfig>& toy_data_settings();

struct FashionMnistConfig {
  std::string dir = "/usr/share/datasets/fashion-mnist";
  std::string split = "train";
  int64_t pad = 0;
  int64_t shards = 1;
  std::string out;
};
const settings::Table<FashionMnistConfig>& fashion_mnist_settings();

struct ImageFolderConfig {
  std::string dir;
  int64_t channels = 3;
  int64_t image_size = 0;
  int64_t shards = 1;
  std::string out;
};
const settings::Table<ImageFolderConfig>& image_folder_settings();

struct GmmDataConfig {
  std::string gmm_file;
  int64_t num = 2000;
  uint32_t seed = 0;
  std::string out;
};
const settings::Table<GmmDataConfig>& gmm_data_settings();

struct PlotConfig {
  std::string run_dir;
};
const settings::Table<PlotConfig>& plot_settings();

const settings::Table<experiments::DiffusersImportConfig>& import_settings();
const settings::Table<experiments::DiffusersExportConfig>& export_settings();

struct CheckpointInfoConfig {
  std::string checkpoint;
};
const settings::Table<CheckpointInfoConfig>& checkpoint_info_settings();

}  // namespace unidiff::launcher
