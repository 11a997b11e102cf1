// Model groups (DESIGN.md): a named network with a role. A trained group owns its reducer (over
// its own communicator, duplicated from the world), its AdamW on the reducer's flat buckets
// (optionally ZeRO-1 sharded), its learning-rate schedule and its EMA, each with its own settings
// (a method's `--<group>_optim_*` flags, defaulting to the run's). A frozen group (a teacher, a
// reward model) is in eval mode, holds no gradients and no EMA, is never synchronised, and may be
// stored in bfloat16. Objectives receive groups by name; nothing else knows which groups exist.
//
// Losses that cross groups: while one group's loss flows through another group's network (DMD's
// generator loss through the fake score), hold the other group's NoGradScope: its parameters
// take no gradient, so its reducer neither counts nor reduces anything of that loss, while the
// gradient still flows through its network to the inputs.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

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

  /// Rank 0's weights are broadcast to every rank first, so all replicas start equal. The module is
  /// usually a network (models::Network); a head or another module works too (net() then refuses).
  ModelGroup(std::string name, Role role, std::shared_ptr<torch::nn::Module> module,
             const dist::Communicator& world, const OptimConfig& optim = {},
             const DistConfig& dist = {}, int64_t total_steps = 1);
  ~ModelGroup();

  const std::string& name() const { return name_; }
  Role role() const { return role_; }
  bool trained() const { return role_ == Role::kTrained; }
  /// The group's network (a programming error when the module is none).
  models::Network& net();
  torch::nn::Module& module() { return *module_; }
  const torch::nn::Module& module() const { return *module_; }
  /// Trained groups only.
  models::Ema& ema();
  const models::Ema& ema() const;
  dist::Reducer& reducer();
  dist::FlatAdamW& optimizer();
  const OptimConfig& optim() const { return optim_; }
  int64_t total_steps() const { return total_steps_; }

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
  /// Device flags of skipped updates: a step whose gradient norm is not finite changes neither
  /// the weights, the optimizer moments nor the EMA (every rank sees the same averaged gradient, so
  /// every rank skips it). skipped(): float32 [1], 1 if the last update() was skipped;
  /// skipped_total(): how many were, since the group was built (0 before any update).
  const torch::Tensor& skipped() const { return skipped_; }
  const torch::Tensor& skipped_total() const { return skip_count_; }
  /// Training starts over from the current weights over `total_steps`: fresh optimizer moments,
  /// EMA and learning-rate schedule, as a new group would have (progressive distillation's rounds).
  void restart(int64_t total_steps);

  /// Frozen groups: keep the parameters in `dtype` (bfloat16 halves a teacher's memory). forward()
  /// then runs the network under that dtype's autocast and returns float32.
  void store_as(torch::ScalarType dtype);
  torch::ScalarType storage() const { return storage_; }
  /// The network's output in float32 whatever the storage (labels undefined: unconditional call;
  /// w defined: a guidance-conditioned network's call at guidance w [B], Network::forward_guided).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& labels = {},
                        const torch::Tensor& w = {});

  /// Bytes this rank holds for the group: parameters, gradients, optimizer moments, EMA.
  struct Bytes {
    int64_t params = 0, grads = 0, optimizer = 0, ema = 0;
    int64_t total() const { return params + grads + optimizer + ema; }
  };
  Bytes bytes() const;

  /// While alive, the group's parameters take no gradient (see the header comment).
  class NoGradScope {
   public:
    explicit NoGradScope(ModelGroup& group);
    ~NoGradScope();
    NoGradScope(const NoGradScope&) = delete;
    NoGradScope& operator=(const NoGradScope&) = delete;

   private:
    std::vector<torch::Tensor> params_;
    std::vector<bool> was_;
  };

 private:
  void build_training();

  std::string name_;
  Role role_;
  std::shared_ptr<torch::nn::Module> module_;
  models::Network* network_ = nullptr;  ///< module_ as a network, or null
  std::unique_ptr<dist::Communicator> world_;  ///< a handle for rebuilding the reducer
  OptimConfig optim_;
  DistConfig dist_;
  int64_t total_steps_;
  torch::ScalarType storage_ = torch::kFloat32;
  std::unique_ptr<dist::Reducer> reducer_;
  std::unique_ptr<dist::FlatAdamW> optimizer_;
  std::unique_ptr<models::Ema> ema_;
  torch::Tensor lr_;  ///< float32 0-dim on the parameters' device, written by schedule()
  torch::Tensor skipped_;    ///< float32 [1] on the device: 1 when the last update() was skipped
  torch::Tensor skip_count_; ///< float32 [1] on the device: updates skipped so far
};

/// The groups of one run, by name, in the order they were added (the order of the checkpoint's
/// records and of every loop over them).
class ModelGroups {
 public:
  ModelGroup& add(std::unique_ptr<ModelGroup> group);
  /// Throws (a programming error) when the method asks for a group it did not create.
  ModelGroup& get(const std::string& name);
  const ModelGroup& get(const std::string& name) const;
  bool has(const std::string& name) const;
  std::vector<ModelGroup*> all();
  std::vector<const ModelGroup*> all() const;

 private:
  std::vector<std::unique_ptr<ModelGroup>> groups_;
};

}  // namespace unidiff::experiments
