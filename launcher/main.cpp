// The `unidiff` executable: `unidiff <command> [--flags]`. Parses flags into config structs, starts
// the ranks, runs the command, and turns failures into exit codes: 0 done, 2 bad input (flags,
// files, shapes; the message names the problem), 1 any other failure. One rank's failure ends the
// whole job (MPI_Abort) instead of leaving the others in a collective.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <set>
#include <iostream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/log.h"
#include "core/memory.h"
#include "data/dataset.h"
#include "data/fashion_mnist.h"
#include "data/image_folder.h"
#include "data/toy.h"
#include "dist/job.h"
#include "dist/world.h"
#include "dist/checkpoint.h"
#include "dist/signals.h"
#include "experiments/classifier.h"
#include "experiments/eval.h"
#include "experiments/run/checkpointing.h"
#include "experiments/run/method.h"
#include "experiments/diffusers_io.h"
#include "experiments/run/plots.h"
#include "experiments/run/run.h"
#include "experiments/sample.h"
#include "launcher/cli.h"
#include "launcher/commands.h"
#include "models/gmm.h"

namespace {

using unidiff::launcher::Command;
namespace fs = std::filesystem;

using unidiff::dist::kExitBadInput;
using unidiff::dist::kExitFailure;
using unidiff::dist::kExitOk;

std::string overview() {
  std::string s =
      "unidiff: trains diffusion models on a CPU, a GPU or a cluster (launch with mpirun).\n\n"
      "usage: unidiff <command> [--flagfile=FILE] [--flag=value ...]\n\ncommands:\n";
  size_t width = 0;
  for (const auto& c : unidiff::launcher::commands()) width = std::max(width, c.name.size());
  for (const auto& c : unidiff::launcher::commands()) {
    s += "  " + c.name + std::string(width + 2 - c.name.size(), ' ') + c.summary + "\n";
  }
  s += "\n'unidiff <command> --help' lists a command's flags. Exit codes: 0 done, 1 failure,\n"
       "2 bad input (flags, files, shapes).\n";
  return s;
}

std::string valid_commands() {
  return "train, sample, eval, data, ckpt";
}

const Command* find_command(const std::string& name) {
  for (const auto& c : unidiff::launcher::commands()) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

/// The sub-commands of `group` ("data" or "ckpt"), comma-separated.
std::string sub_commands(const std::string& group) {
  std::string s;
  const std::string prefix = group + " ";
  for (const auto& c : unidiff::launcher::commands()) {
    if (c.name.rfind(prefix, 0) == 0) s += (s.empty() ? "" : ", ") + c.name.substr(prefix.size());
  }
  return s;
}

using unidiff::settings::Assignments;
namespace launcher = unidiff::launcher;

int run_data_toy(const Assignments& set) {
  const auto c = launcher::toy_data_settings().build(set);
  UD_CHECK_INPUT(!c.out.empty(), "--out is required (the HDF5 file to write)");
  const torch::Tensor x = unidiff::data::make_toy(c.dist, c.num, c.seed);
  unidiff::data::write_dataset_shards(c.out, x, {}, 0, "toy:" + c.dist, c.shards);
  unidiff::log::info("data", unidiff::detail::str_cat("wrote ", c.num, " samples of '", c.dist,
                                                      "' (seed ", c.seed, ") to ", c.out));
  return kExitOk;
}

int run_data_fashion_mnist(const Assignments& set) {
  const auto c = launcher::fashion_mnist_settings().build(set);
  UD_CHECK_INPUT(!c.out.empty(), "--out is required (the HDF5 file to write)");
  const auto d = unidiff::data::read_fashion_mnist(c.dir, c.split, c.pad);
  unidiff::data::write_dataset_shards(c.out, d.images, d.labels, 10, "fashion-mnist:" + c.split,
                                      c.shards);
  unidiff::log::info("data", unidiff::detail::str_cat("wrote ", d.images.size(0), " Fashion-MNIST ",
                                                      c.split, " images of ", d.images.size(2), "x",
                                                      d.images.size(3), " with labels to ", c.out,
                                                      c.shards > 1 ? " (sharded)" : ""));
  return kExitOk;
}

int run_data_images(const Assignments& set) {
  const auto c = launcher::image_folder_settings().build(set);
  UD_CHECK_INPUT(!c.dir.empty(), "--dir is required (the folder of images)");
  UD_CHECK_INPUT(!c.out.empty(), "--out is required (the HDF5 file to write)");
  const auto d = unidiff::data::read_image_folder(c.dir, c.channels, c.image_size);
  unidiff::data::write_dataset_shards(c.out, d.images, d.labels,
                                      static_cast<int64_t>(d.class_names.size()), "images:" + c.dir,
                                      c.shards, d.class_names);
  unidiff::log::info("data", unidiff::detail::str_cat(
                                 "wrote ", d.images.size(0), " images of ", d.images.size(1), "x",
                                 d.images.size(2), "x", d.images.size(3), " (", d.class_names.size(),
                                 " classes) to ", c.out, c.shards > 1 ? " (sharded)" : ""));
  return kExitOk;
}

int run_data_gmm(const Assignments& set) {
  const auto c = launcher::gmm_data_settings().build(set);
  UD_CHECK_INPUT(!c.gmm_file.empty(), "--gmm_file is required (HDF5 with /weights, /means, /stds)");
  UD_CHECK_INPUT(!c.out.empty(), "--out is required (the HDF5 file to write)");
  const auto gmm = unidiff::models::GaussianMixture::load(c.gmm_file);
  unidiff::data::write_dataset(c.out, gmm.sample(c.num, c.seed), {}, 0, "gmm:" + c.gmm_file);
  unidiff::log::info("data", unidiff::detail::str_cat("wrote ", c.num, " exact samples of the ",
                                                      gmm.components(), "-component mixture to ", c.out));
  return kExitOk;
}

/// `unidiff train`: the run's settings, the method's (refusing another method's flags), the
/// resolved configuration, then the run.
int run_train(const Command& command, const Assignments& set) {
  namespace ex = unidiff::experiments;
  ex::RunConfig config = ex::run_settings().build(set);
  const ex::MethodInfo& method = ex::find_method(config.method);
  std::vector<unidiff::settings::FlagInfo> flags = launcher::run_flags();
  std::set<std::string> own;
  for (const auto& f : flags) own.insert(f.name);
  for (const auto& f : method.flags()) {
    if (own.insert(f.name).second) flags.push_back(f);
  }
  for (const auto& [flag, value] : set) {
    if (own.count(flag)) continue;
    std::string owners;
    for (const ex::MethodInfo* m : ex::methods()) {
      for (const auto& f : m->flags()) {
        if (f.name == flag) owners += (owners.empty() ? "" : ", ") + m->name;
      }
    }
    UD_FAIL_INPUT("--", flag, " is a flag of --method=", owners, "; this run's method is ", method.name);
  }
  (void)command;
  config.resolved_flags = launcher::resolved_flags("train", flags, set);
  const auto result = ex::train(config, set);
  return result.stopped ? unidiff::dist::kExitRequeue : kExitOk;
}

int dispatch(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::cout << overview();
    return args.empty() ? kExitBadInput : kExitOk;
  }
  std::string name = args[0];
  size_t first_flag = 1;
  // `eval` is a command of its own and the group of `eval train-classifier`.
  const bool eval_group = name == "eval" && args.size() >= 2 && args[1].rfind("-", 0) != 0;
  if (name == "data" || name == "ckpt" || eval_group) {
    // Commands with sub-commands: `data <converter>`, `ckpt <action>`.
    const std::string what = name == "data" ? "converter" : "action";
    const std::string valid = sub_commands(name);
    if (args.size() < 2 || args[1].rfind("-", 0) == 0) {
      if (args.size() >= 2 && (args[1] == "--help" || args[1] == "-h")) {
        std::cout << "usage: unidiff " << name << " <" << what << "> [--flags]\n" << what
                  << "s: " << valid << "\n";
        return kExitOk;
      }
      UD_FAIL_INPUT("'unidiff ", name, "' needs a ", what, " (valid: ", valid, ")");
    }
    const std::string sub = args[1];
    name = name + " " + sub;
    first_flag = 2;
    UD_CHECK_INPUT(find_command(name) != nullptr, "unknown ",
                   args[0] == "data" ? "data converter" : args[0] == "eval" ? "eval action" : "ckpt action",
                   " '", sub, "' (valid: ", valid, ")");
  }
  const Command* command = find_command(name);
  UD_CHECK_INPUT(command != nullptr, "unknown command '", name, "' (valid: ", valid_commands(), ")");
  const auto parsed = launcher::parse_flags(
      *command, std::vector<std::string>(args.begin() + static_cast<long>(first_flag), args.end()));
  if (parsed.help) {
    std::cout << unidiff::launcher::command_help(*command);
    return kExitOk;
  }

  const Assignments& set = parsed.set;
  if (name == "train") return run_train(*command, set);
  // The other commands are single-process: rank 0 does the work.
  if (unidiff::dist::rank() != 0) return kExitOk;
  if (name == "sample") {
    unidiff::experiments::run_sample(unidiff::experiments::sample_settings().build(set));
    return kExitOk;
  }
  if (name == "eval") {
    std::cout << unidiff::experiments::run_eval(unidiff::experiments::eval_settings().build(set)) << std::endl;
    return kExitOk;
  }
  if (name == "eval train-classifier") {
    unidiff::experiments::train_classifier(launcher::classifier_settings().build(set));
    return kExitOk;
  }
  if (name == "plot") {
    const std::string run_dir = launcher::plot_settings().build(set).run_dir;
    UD_CHECK_INPUT(!run_dir.empty(), "--run_dir is required");
    UD_CHECK_INPUT(!unidiff::experiments::write_plots(run_dir).empty(), "'", run_dir,
                   "/metrics.jsonl' has no series of two or more finite points to plot");
    return kExitOk;
  }
  if (name == "import") {
    unidiff::experiments::import_diffusers(launcher::import_settings().build(set));
    return kExitOk;
  }
  if (name == "export") {
    unidiff::experiments::export_diffusers(launcher::export_settings().build(set));
    return kExitOk;
  }
  if (name == "ckpt info") {
    const std::string path = launcher::checkpoint_info_settings().build(set).checkpoint;
    UD_CHECK_INPUT(!path.empty(), "--checkpoint is required (a checkpoint or run directory)");
    std::cout << unidiff::experiments::checkpoint_to_resume(path, path)->describe();
    return kExitOk;
  }
  if (name == "data toy") return run_data_toy(set);
  if (name == "data gmm") return run_data_gmm(set);
  if (name == "data fashion-mnist") return run_data_fashion_mnist(set);
  if (name == "data images") return run_data_images(set);
  UD_ASSERT(false, "command ", name, " has no handler");
  return kExitFailure;
}

}  // namespace

int main(int argc, char** argv) {
  unidiff::memory::keep_freed_pages();
  const int code = unidiff::dist::run_guarded([&] {
    unidiff::dist::init(&argc, &argv);
    unidiff::log::init(argv[0], unidiff::dist::rank());
    return dispatch(argc, argv);
  });
  unidiff::dist::finalize();
  return code;
}
