// Model groups (DESIGN.md): a named network with a role. A trained group owns its reducer (over
// its own communicator, duplicated from the world), its AdamW on the reducer's flat buckets
// (optionally ZeRO-1 sharded), its learning-rate schedule and its EMA; a frozen group (a teacher,
// a reward model) is in eval mode, never takes gradients and is never synchronised. Objectives
// receive groups by name; nothing else knows which groups exist.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "dist/communicator.h"
#include "dist/flat_adamw.h"
#include "dist/reducer.h"
#include "experiments/config.h"
#include "models/ema.h"
#include "models/network.h"

namespace unidiff::experiments {

/// Learning rate at `step` (0-based) of `total`: linear warm-up, then constant or cosine to 0.
double learning_rate(const OptimConfig& optim, int64_t step, int64_t total);

class ModelGroup {
 public:
  enum class Role { kTrained, kFrozen };

  /// Rank 0's weights are broadcast to every rank first, so all replicas start equal.
  ModelGroup(std::string name, Role role, std::shared_ptr<models::Network> network,
             const dist::Communicator& world, const OptimConfig& optim = {},
             const DistConfig& dist = {}, int64_t total_steps = 1);

  const std::string& name() const { return name_; }
  Role role() const { return role_; }
  models::Network& net() { return *network_; }
  std::shared_ptr<models::Network> network() const { return network_; }
  models::Ema& ema() { return *ema_; }
  const models::Ema& ema() const { return *ema_; }
  dist::Reducer& reducer() { return *reducer_; }
  dist::FlatAdamW& optimizer() { return *optimizer_; }

  /// Before the step's backward passes: zero the gradients.
  void begin_step();
  /// After backward: schedule(step), then update(). Returns the learning rate used.
  double end_step(int64_t step);
  /// Host half of step `step`'s update: its learning rate and EMA decay written into device
  /// scalars, the optimizer's and the EMA's step counts advanced. Returns the learning rate.
  double schedule(int64_t step);
  /// Device half: wait for the gradient average, clip, AdamW and EMA with the scalars schedule()
  /// wrote. Launches kernels only (at one rank no collective either), so a captured CUDA graph
  /// can replay begin_step(), the step's passes and update() with new scalars each time.
  void update();

 private:
  std::string name_;
  Role role_;
  std::shared_ptr<models::Network> network_;
  OptimConfig optim_;
  int64_t total_steps_;
  std::unique_ptr<dist::Reducer> reducer_;
  std::unique_ptr<dist::FlatAdamW> optimizer_;
  std::unique_ptr<models::Ema> ema_;
  torch::Tensor lr_;  ///< float32 0-dim on the parameters' device, written by schedule()
};

/// The groups of one experiment, by name.
class ModelGroups {
 public:
  ModelGroup& add(std::unique_ptr<ModelGroup> group);
  /// Throws (a programming error) when the experiment asks for a group it did not create.
  ModelGroup& get(const std::string& name);
  bool has(const std::string& name) const { return groups_.count(name) > 0; }

 private:
  std::map<std::string, std::unique_ptr<ModelGroup>> groups_;
};

}  // namespace unidiff::experiments
