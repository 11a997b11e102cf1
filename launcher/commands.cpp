// launcher/commands.h.
#include "launcher/commands.h"

#include <algorithm>
#include <set>

#include "experiments/config.h"
#include "experiments/diffusers_io.h"
#include "experiments/run/method.h"
#include "experiments/run/run_config.h"

namespace unidiff::launcher {

namespace s = settings;
using settings::Decl;

const s::Table<experiments::ClassifierTrainConfig>& classifier_settings() {
  static const s::Table<experiments::ClassifierTrainConfig> t = [] {
    using C = experiments::ClassifierTrainConfig;
    s::Table<C> t;
    t.add(Decl("data", "labelled training images (HDF5 /data uint8 [N, C, H, W], /labels)"), &C::data);
    t.add(Decl("reference", "labelled test images: the accuracy after every epoch"), &C::test);
    t.add(Decl("out", "the classifier file to write"), &C::out);
    t.add(Decl("classifier_epochs", "eval train-classifier: passes over --data").check(s::positive()), &C::epochs);
    t.add(Decl("classifier_batch", "eval train-classifier: images per step").check(s::positive()), &C::batch);
    t.add(experiments::seed_decl(), &C::seed);
    t.add(experiments::threads_decl(), &C::threads);
    return t;
  }();
  return t;
}

const s::Table<ToyDataConfig>& toy_data_settings() {
  static const s::Table<ToyDataConfig> t = [] {
    using C = ToyDataConfig;
    s::Table<C> t;
    t.add(Decl("dist", "toy distribution: moons, swissroll, 8gaussians, checkerboard, gaussian"), &C::dist);
    t.add(Decl("num", "number of samples").check(s::positive()), &C::num);
    t.add(experiments::seed_decl(), &C::seed);
    t.add(Decl("out", "output HDF5 file"), &C::out);
    t.add(Decl("shards", "number of shard files to write (1 = one file at --out)").check(s::positive()), &C::shards);
    return t;
  }();
  return t;
}

const s::Table<FashionMnistConfig>& fashion_mnist_settings() {
  static const s::Table<FashionMnistConfig> t = [] {
    using C = FashionMnistConfig;
    s::Table<C> t;
    t.add(Decl("split", "Fashion-MNIST split: train (60,000) or test (10,000)"), &C::split);
    t.add(Decl("pad", "zero pixels added on each side (2 makes Fashion-MNIST 32x32)").check(s::non_negative()), &C::pad);
    t.add(Decl("out", "output HDF5 file"), &C::out);
    t.add(Decl("shards", "number of shard files to write (1 = one file at --out)").check(s::positive()), &C::shards);
    t.add(Decl("fashion_mnist_dir", "folder of the Fashion-MNIST IDX .gz files"), &C::dir);
    return t;
  }();
  return t;
}

const s::Table<ImageFolderConfig>& image_folder_settings() {
  static const s::Table<ImageFolderConfig> t = [] {
    using C = ImageFolderConfig;
    s::Table<C> t;
    t.add(Decl("dir", "folder of .png/.jpg images, one sub-folder per class (or none: unlabelled)"), &C::dir);
    t.add(Decl("channels", "image channels to decode to: 1 (grey) or 3 (RGB); alpha is composited onto black"),
          &C::channels);
    t.add(Decl("image_size", "resize the shorter side to this and centre-crop a square (0: keep; all images must "
                             "match)")
              .check(s::non_negative()),
          &C::image_size);
    t.add(Decl("out", "output HDF5 file"), &C::out);
    t.add(Decl("shards", "number of shard files to write (1 = one file at --out)").check(s::positive()), &C::shards);
    return t;
  }();
  return t;
}

const s::Table<GmmDataConfig>& gmm_data_settings() {
  static const s::Table<GmmDataConfig> t = [] {
    using C = GmmDataConfig;
    s::Table<C> t;
    t.add(Decl("gmm_file", "Gaussian-mixture file (HDF5 /weights [K], /means [K, D], /stds [K, D])"), &C::gmm_file);
    t.add(Decl("num", "number of samples").check(s::positive()), &C::num);
    t.add(experiments::seed_decl(), &C::seed);
    t.add(Decl("out", "output HDF5 file"), &C::out);
    return t;
  }();
  return t;
}

const s::Table<CheckpointInfoConfig>& checkpoint_info_settings() {
  static const s::Table<CheckpointInfoConfig> t = [] {
    s::Table<CheckpointInfoConfig> t;
    t.add(Decl("checkpoint", "a checkpoint directory or a run directory"), &CheckpointInfoConfig::checkpoint);
    return t;
  }();
  return t;
}

const s::Table<PlotConfig>& plot_settings() {
  static const s::Table<PlotConfig> t = [] {
    s::Table<PlotConfig> t;
    t.add(Decl("run_dir", "the run directory whose metrics.jsonl to plot (into RUN_DIR/plots/)"), &PlotConfig::run_dir);
    return t;
  }();
  return t;
}

const s::Table<experiments::DiffusersImportConfig>& import_settings() {
  static const s::Table<experiments::DiffusersImportConfig> t = [] {
    using C = experiments::DiffusersImportConfig;
    s::Table<C> t;
    t.add(Decl("from", "the format to import: diffusers (a DDPMPipeline folder or a UNet2DModel folder)"), &C::from);
    t.add(Decl("dir", "the folder to import"), &C::dir);
    t.add(Decl("out", "the unidiff model file to write"), &C::out);
    return t;
  }();
  return t;
}

const s::Table<experiments::DiffusersExportConfig>& export_settings() {
  static const s::Table<experiments::DiffusersExportConfig> t = [] {
    using C = experiments::DiffusersExportConfig;
    s::Table<C> t;
    t.add(Decl("to", "the format to write: diffusers (a DDPMPipeline folder)"), &C::to);
    t.add(Decl("checkpoint", "a run directory or model file (a unet trained with a DDPM objective)"),
          &C::checkpoint);
    t.add(Decl("dir", "the folder to write (created; the pipeline's files in it are replaced)"), &C::dir);
    t.add(Decl("use_ema", "export the EMA weights (false: the raw weights)"), &C::use_ema);
    return t;
  }();
  return t;
}

std::vector<s::FlagInfo> run_flags() { return s::flag_infos(experiments::run_settings()); }

namespace {

/// The train command's flags: the run's, then each method's own under its heading (a flag
/// several methods share is listed once, under the first).
std::vector<s::FlagInfo> train_flags() {
  std::vector<s::FlagInfo> out = run_flags();
  std::set<std::string> seen;
  for (const auto& f : out) seen.insert(f.name);
  for (const experiments::MethodInfo* m : experiments::methods()) {
    std::string heading = "--method=" + m->name;
    for (const auto& a : m->aliases) heading += " (or " + a + ")";
    heading += ": " + m->summary;
    for (s::FlagInfo f : m->flags()) {
      if (!seen.insert(f.name).second) {
        // Listed already: keep one entry, with every name any method accepts for it.
        for (auto& have : out) {
          if (have.name != f.name) continue;
          for (const auto& a : f.aliases) {
            if (std::find(have.aliases.begin(), have.aliases.end(), a) == have.aliases.end()) have.aliases.push_back(a);
          }
        }
        continue;
      }
      f.group = heading;
      out.push_back(std::move(f));
    }
  }
  return out;
}

}  // namespace

const std::vector<Command>& commands() {
  static const std::vector<Command> list = {
      {"train", "train a model (resumable runs arrive with checkpoints); run under mpirun for data parallel",
       train_flags()},
      {"sample", "draw samples from a trained model into an HDF5 file (and a PNG beside it)",
       s::flag_infos(experiments::sample_settings())},
      {"eval", "distances between a samples file and a reference dataset, printed as one JSON line",
       s::flag_infos(experiments::eval_settings())},
      {"eval train-classifier",
       "train the evaluation classifier on labelled images (--data), report its accuracy on --reference",
       s::flag_infos(classifier_settings())},
      {"plot", "draw every curve of a run's metrics.jsonl (loss, learning rate, evaluations, rewards) as PNGs in "
               "RUN_DIR/plots/",
       s::flag_infos(plot_settings())},
      {"import", "import a model from another format: --from=diffusers --dir=DIR --out=model.h5",
       s::flag_infos(import_settings())},
      {"export", "export a model to another format: --to=diffusers --checkpoint=RUN --dir=DIR",
       s::flag_infos(export_settings())},
      {"ckpt info", "print a checkpoint's manifest: step, world size, groups and tensors",
       s::flag_infos(checkpoint_info_settings())},
      {"data gmm", "draw exact samples of a Gaussian mixture file (/weights, /means, /stds)",
       s::flag_infos(gmm_data_settings())},
      {"data toy", "write a 2-D toy dataset (moons, swissroll, 8gaussians, checkerboard, gaussian)",
       s::flag_infos(toy_data_settings())},
      {"data fashion-mnist", "convert Debian's Fashion-MNIST to uint8 [N, 1, 28, 28] images + labels",
       s::flag_infos(fashion_mnist_settings())},
      {"data images", "convert a folder of PNG/JPEG images (one sub-folder per class) to uint8 images + labels",
       s::flag_infos(image_folder_settings())},
  };
  return list;
}

}  // namespace unidiff::launcher
