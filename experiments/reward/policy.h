// What the reward methods share (handbook 3.3, FORMULAS.md section 6): their settings, the policy
// (a DDPM model from --init_from, its EMA weights, as the trained group `policy`), its keyed DDIM
// rollouts with their trajectories, the reward, and the gathering of every rank's rollouts in
// global sample order (so each optimizer step takes the same samples on any number of ranks).
//
// Keys. Rollout r (an epoch of DDPO and DRWR, a step of ReFL, DRaFT and QSM) draws its starting
// noise and its sampler noise from (seed, sampling, phase 3, step word r (S + 1) + i, global sample
// index), i = 0 for x_T and i + 1 for sampler step i; so rollouts never share numbers and a sample's
// numbers do not depend on the ranks.
#pragma once

#include <torch/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/settings.h"
#include "dist/communicator.h"
#include "experiments/distill/teacher.h"
#include "experiments/reward/rewards.h"
#include "experiments/run/method.h"
#include "experiments/run/model_group.h"
#include "experiments/run/streams.h"
#include "objectives/sampling/ddim.h"

namespace unidiff::experiments {

struct RlConfig {
  std::string init_from;          ///< the policy's starting weights (a DDPM model file or run directory, EMA)
  RewardConfig reward;
  int64_t samples = 256;          ///< DDPO, DRWR: rollouts per epoch, over all ranks
  int64_t batch = 64;             ///< samples per optimizer step, over all ranks
  int64_t steps = 50;             ///< the rollouts' DDIM steps (trailing)
  double eta = 1.0;               ///< their stochasticity (DDPO needs eta > 0)
  int64_t epochs = 20;            ///< DDPO, DRWR: sampling epochs
  int64_t inner_epochs = 1;       ///< DDPO, DRWR: passes over each epoch's rollouts
  double clip = 1e-4;             ///< DDPO: PPO's ratio clip
  double adv_clip = 5;            ///< DDPO: advantages clipped to [-adv_clip, adv_clip]
  double timestep_fraction = 1.0; ///< DDPO: the fraction of each rollout's stochastic steps trained on
  int64_t stat_buffer = 32;       ///< DDPO: per-class reward buffer
  int64_t stat_min = 16;          ///< DDPO: rewards a class needs before its own statistics are used
  bool save_rollouts = false;     ///< DDPO, DRWR: write each epoch's samples, rewards and labels
  double drwr_beta = 1.0;         ///< DRWR: temperature of exp(r / beta)
  double drwr_max_weight = 10;    ///< DRWR: the weight's clip
  bool drwr_advantage = false;    ///< DRWR: exp((r - mean r) / beta) (DAWR's first step)
  double refl_t_min = 0.0;        ///< ReFL: the random step's time range, fractions of T
  double refl_t_max = 0.25;
  double refl_lambda = 1.0;       ///< ReFL, DRaFT: the reward's weight in the loss -lambda r
  double refl_pretrain_weight = 0;///< ReFL: weight of the pre-training loss on --data
  int64_t draft_k = 1;            ///< DRaFT: the last K steps carry gradients
  bool draft_lv = false;          ///< DRaFT-LV: the last step re-noised and denoised twice, averaged
  bool draft_checkpoint = true;   ///< DRaFT with K > 1: activation checkpointing (one step's activations held)
  double qsm_alpha = 1.0;         ///< QSM: the score matched to alpha grad r
};
const settings::Table<RlConfig>& rl_settings();

/// The flags of reward method `method` (its own and the common ones).
std::vector<settings::FlagInfo> rl_flags(const std::string& method);

/// What every reward method sets up: the run's flags checked (float32, no CUDA graph), the data
/// stream "data" opened (the sample shape; ReFL's pre-training batches), the starting model
/// (--init_from, a DDPM model checked against the data), the reward (checked against the samples
/// and the model's classes) and the trained group `policy`, a copy of the model's network with
/// the run's optimizer over `total_steps`.
struct PolicySetup {
  Teacher model;
  Reward reward;
  ModelGroup* policy = nullptr;
  DataStream* data = nullptr;
};
PolicySetup setup_policy(Run& run, const RlConfig& c, const std::string& method, int64_t total_steps);

/// The resume guard of reward method `method`: its own and the common settings, --init_from as the
/// resolved model path.
std::map<std::string, std::string> rl_guard(const RlConfig& c, const std::string& model_path, const std::string& method);

/// The result: the policy's network with the model's settings, sampled by default as the rollouts
/// were (DDIM, --rl_steps trailing steps, --rl_eta).
ResultModel policy_result(const Teacher& model, const RlConfig& c, ModelGroup* policy);

/// A rank's rows of a global batch [0, n): r, r + W, ...
torch::Tensor rank_rows(int64_t n, int world, int rank);

/// Every rank's rows [n_local, ...] (this rank's global indices `index`) put back in global order
/// [N, ...] on every rank. Collective.
torch::Tensor gather_rows(dist::Communicator& comm, const torch::Tensor& local, const torch::Tensor& index, int64_t n);

/// The policy: its network and settings (as a distillation teacher: a DDPM model).
struct Policy {
  Teacher model;  ///< the loaded model (its network is the policy group's)
  ModelGroup* group = nullptr;
};

/// eps of the network of `group` at (x, t) for `labels` (t float per sample, code indices).
torch::Tensor policy_eps(ModelGroup& group, const Teacher& model, const torch::Tensor& x, const torch::Tensor& t,
                         const torch::Tensor& labels);

/// Rollout `r` of samples `index` (global, on the device) with the policy network of `group`:
/// DDIM over `steps` trailing steps with `eta` from keyed noise; records the trajectory when asked.
/// Without gradients.
torch::Tensor rollout(ModelGroup& group, const Teacher& model, const torch::Tensor& index, const torch::Tensor& labels,
                      uint32_t seed, int64_t r, int64_t steps, double eta, objectives::Trajectory* trajectory);

/// The rewards of this rank's samples x (classes `labels` or undefined; global indices `index`) gathered in global order, float64
/// [N] on the host on every rank; a non-finite reward is reported (rank 0) with its sample's global
/// index. Collective.
torch::Tensor gathered_rewards(dist::Communicator& comm, const Reward& reward, const torch::Tensor& x,
                              const torch::Tensor& labels, const torch::Tensor& index, int64_t n);

/// The keyed noise of sampler step i of rollout r (see the header comment).
torch::Tensor rollout_noise(uint32_t seed, int64_t r, int64_t steps, int64_t i, const torch::Tensor& index,
                            const std::vector<int64_t>& shape);

}  // namespace unidiff::experiments
