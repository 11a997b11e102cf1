// Methods (DESIGN.md "Methods"). A method is a class registered by name (`--method`). The one
// training run (experiments/run/run.h) owns everything methods share: ranks and devices, data
// streams and their positions, the resume guard, the run directory, progress and metrics.jsonl,
// evaluation, checkpoint policy, signals and exit codes. A method declares its settings, builds
// its groups, runs a step (phases and sub-steps keyed by name), saves and loads its own state,
// and names the model the run evaluates and writes.
//
// Adding a method is new files in its family's folder (experiments/pretrain, distill, reward):
// a class deriving from Method and one `register_method` call at namespace scope in its .cpp
// (the folders' sources are globbed and linked whole, so the registration runs), a recipe, tests.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

#include "core/settings.h"
#include "dist/checkpoint.h"
#include "experiments/config.h"
#include "experiments/model_io.h"
#include "experiments/run/model_group.h"

namespace unidiff::experiments {

class Run;

/// What one step leaves: device tensors only (reading them would wait for the device).
struct StepOutput {
  torch::Tensor loss;    ///< detached scalar: the progress line's and metrics.jsonl's "loss"
  double lr = 0;         ///< the learning rate of the step (the main trained group's)
  /// Further detached scalars averaged over the logging window like the loss ("loss_fake", ...).
  std::map<std::string, torch::Tensor> stats;
  bool boundary = false; ///< a stage of the method ended with this step (log now)
};

/// The model a run produces: what `RUN_DIR/model.h5` holds and what evaluation samples.
struct ResultModel {
  models::NetworkConfig network;
  DiffusionConfig diffusion;  ///< including the sampler, steps and spacing it is sampled with
  ModelGroup* group = nullptr;  ///< its weights and EMA
};

class Method {
 public:
  virtual ~Method() = default;

  /// Everything that can fail on bad input, before the run directory is touched: checks the
  /// settings, opens the data streams (run.open_stream), loads teachers, builds the groups
  /// (run.groups()). Collective.
  virtual void setup(Run& run) = 0;
  /// The run's optimizer steps (--train_steps for most; progressive distillation: rounds x steps).
  virtual int64_t total_steps() const = 0;
  /// The settings a resume must not change beyond the run's declared ones: the method's
  /// guarded settings, resolved (defaults filled in), and values derived from the data.
  virtual std::map<std::string, std::string> guard() const = 0;
  /// One line for the log: what is trained, on what.
  virtual std::string describe() const = 0;

  /// Rank 0, once the run directory is ready: files of the method's own (progressive
  /// distillation's rounds.jsonl); `resuming` tells whether the run goes on from a checkpoint.
  virtual void start(bool resuming) { (void)resuming; }
  /// The method's state beyond its groups and streams (the PD round, a curriculum position).
  virtual void save_state(dist::CheckpointWriter& writer) { (void)writer; }
  /// Called after the groups and streams were restored.
  virtual void load_state(const dist::CheckpointReader& reader) { (void)reader; }

  /// Step `step` (0-based) of total_steps(). Queues device work; no host synchronisation.
  virtual StepOutput step(int64_t step) = 0;
  /// Words after the progress line's numbers ("round 4 steps"); empty: none.
  virtual std::string progress(int64_t step) const { (void)step; return ""; }
  /// Further fields of a metrics.jsonl row ("round_steps": 4).
  virtual std::map<std::string, double> metrics(int64_t step) const { (void)step; return {}; }
  /// Every rank, after the progress line of `step`: the window's mean loss over all ranks.
  virtual void logged(int64_t step, double loss) { (void)step; (void)loss; }

  /// The model the run evaluates and writes as model.h5.
  virtual ResultModel result() = 0;
  /// The trained groups whose replicas must agree at the end (checked, logged).
  virtual std::vector<ModelGroup*> trained_groups() = 0;
};

/// A method's registration.
struct MethodInfo {
  std::string name;                   ///< --method=name
  std::vector<std::string> aliases;   ///< other accepted names (pre-training: ddpm)
  std::string family;                 ///< pretrain, distill, reward
  std::string summary;                ///< one line for --help
  /// Its own flags (the run's are shared by every method).
  std::function<std::vector<settings::FlagInfo>()> flags;
  /// Builds the method from the command line's assignments (its flags among them).
  std::function<std::unique_ptr<Method>(const settings::Assignments&)> make;
};

/// Registers a method (at namespace scope: `const bool registered = register_method({...});`).
bool register_method(MethodInfo info);
/// Every registered method, by family then name.
std::vector<const MethodInfo*> methods();
/// The method named `name` or one of its aliases; InputError listing them otherwise.
const MethodInfo& find_method(const std::string& name);
/// "pretrain (alias ddpm), progressive, ...".
std::string method_names();

}  // namespace unidiff::experiments
