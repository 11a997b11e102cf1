// The flags of every command and their conversion into config structs. The only place that reads
// FLAGS_ variables.
#pragma once

#include <vector>

#include "experiments/classifier.h"
#include "experiments/config.h"
#include "launcher/cli.h"

namespace unidiff::launcher {

/// Every command, in the order `unidiff --help` lists them.
const std::vector<Command>& commands();

experiments::TrainConfig make_train_config();
experiments::SampleConfig make_sample_config();
experiments::EvalConfig make_eval_config();
experiments::ClassifierTrainConfig make_classifier_config();

struct ToyDataConfig {
  std::string dist;
  int64_t num = 0;
  uint32_t seed = 0;
  std::string out;
  int64_t shards = 1;
};
ToyDataConfig make_toy_data_config();

struct FashionMnistConfig {
  std::string dir;
  std::string split;
  int64_t pad = 0;
  int64_t shards = 1;
  std::string out;
};
FashionMnistConfig make_fashion_mnist_config();

struct ImageFolderConfig {
  std::string dir;
  int64_t channels = 3;
  int64_t image_size = 0;
  int64_t shards = 1;
  std::string out;
};
ImageFolderConfig make_image_folder_config();

/// --checkpoint (ckpt info).
std::string checkpoint_flag();

struct GmmDataConfig {
  std::string gmm_file;
  int64_t num = 0;
  uint32_t seed = 0;
  std::string out;
};
GmmDataConfig make_gmm_data_config();

}  // namespace unidiff::launcher
