// The epoch machinery DDPO and DRWR share. An epoch: at its first optimizer step the frozen group
// `old_policy` takes the policy's weights and samples --rl_samples rollouts (each rank its share,
// keyed by global sample index; optionally recording the trajectories), the rewards are computed
// where the samples are and gathered, and every rank holds the epoch's rollouts in global order.
// Then --rl_inner_epochs passes over a keyed shuffle of the samples in micro-batches of
// --rl_batch, one optimizer step each (the method's train_step). A run resumed within an epoch makes
// the epoch's rollouts again from `old_policy` (in the checkpoint) and finds the reward statistics
// as they were after them (in the checkpoint too): the same numbers. Each epoch's mean reward goes
// to the log, to metrics.jsonl and to RUN_DIR/reward.png (against the epoch).
#pragma once

#include <torch/types.h>

#include <string>
#include <vector>

#include "experiments/reward/policy.h"
#include "experiments/run/method.h"
#include "objectives/reward/policy.h"

namespace unidiff::experiments {

/// "1,2,3" <-> a vector (checkpoint attributes of small method state).
std::string join_numbers(const std::vector<double>& v);
std::vector<double> split_numbers(const std::string& s);

class RolloutMethod : public Method {
 public:
  RolloutMethod(std::string name, RlConfig c, bool trajectories);

  void setup(Run& run) override;
  int64_t total_steps() const override { return c_.epochs * c_.inner_epochs * (c_.samples / c_.batch); }
  std::map<std::string, std::string> guard() const override;
  std::string describe() const override { return describe_; }
  /// The reward history (derived methods add their own state and call these).
  void save_state(dist::CheckpointWriter& writer) override;
  void load_state(const dist::CheckpointReader& reader) override;
  StepOutput step(int64_t step) override;
  std::string progress(int64_t step) const override;
  ResultModel result() override;
  std::vector<ModelGroup*> trained_groups() override { return {policy_}; }

 protected:
  /// One optimizer step on this rank's samples `mine` (global indices, on the device) of the
  /// current epoch, pass `pass`. Returns the loss and extra statistics (detached).
  virtual StepOutput train_step(int64_t step, int64_t epoch, int64_t pass, const torch::Tensor& mine) = 0;
  /// Extra checks and the line describe() returns (the common part is given).
  virtual std::string configure(Run& run, const std::string& common) = 0;
  /// After the epoch's rewards are gathered: advantages, weights (the method's business).
  virtual void rewarded(int64_t epoch, const torch::Tensor& rewards) = 0;

  RlConfig c_;
  std::string name_;
  bool trajectories_;
  Run* run_ = nullptr;
  Teacher model_;
  Reward reward_;
  ModelGroup *policy_ = nullptr, *old_ = nullptr;
  int64_t per_epoch_ = 1;
  // The current epoch's rollouts, every rank's, in global order.
  int64_t rollout_epoch_ = -1;
  torch::Tensor samples_;   ///< [N, ...] the clean samples
  torch::Tensor states_;    ///< [N, S + 1, ...] with trajectories: the state before each step, then x0
  torch::Tensor logp_old_;  ///< [N, S] float64 with trajectories: each step's log-probability (0: deterministic)
  torch::Tensor times_, next_times_;  ///< float [S]: each step's start and end (code indices; -1: clean)
  torch::Tensor rewards_;   ///< [N] float64 (host)
  torch::Tensor labels_;    ///< [N] int64 (host) for a conditional policy, else undefined
  double reward_mean_ = 0, reward_std_ = 0;
  std::vector<double> history_;  ///< each epoch's mean reward
  std::string describe_;

 private:
  void make_rollouts(int64_t epoch, bool fresh);
  void save_rollouts(int64_t epoch, const torch::Tensor& x0, const torch::Tensor& labels, const torch::Tensor& index);
};

}  // namespace unidiff::experiments
