// Configuration as plain structs. "What the model is" (NetworkConfig, DiffusionConfig: saved with
// the weights, enough to rebuild it) stays apart from "how this run executes" (batch, steps,
// paths). Each struct's settings are declared once, in its table (core/settings.h): the flag, its
// help, the model-file attribute and the resume guard all come from there. The launcher parses
// command lines against the tables; nothing here reads a command line.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "core/settings.h"
#include "models/network.h"

namespace unidiff::experiments {

/// "Use the objective's own default" for a real-valued setting.
inline constexpr double kObjectiveDefault = std::numeric_limits<double>::quiet_NaN();

struct DiffusionConfig {
  /// The pre-training objective (experiments/pretrain/objectives.h): ddpm, rf, ncsn, trigflow, ict, scm;
  /// empty = ddpm, or rf when schedule is rf.
  std::string objective;
  std::string schedule = "linear";  ///< DDPM beta schedule (linear, cosine, scaled-linear) or rf
  std::string rf_time = "uniform";  ///< rf: training times uniform, logit-normal (SD3) in (0, 1),
                                    ///< or one (t = 1: one-step distillation on reflow pairs)
  int64_t timesteps = 1000;         ///< T, the number of discrete diffusion steps
  double beta_start = 1e-4;         ///< first beta of the linear schedules
  double beta_end = 0.02;           ///< last beta of the linear schedules
  std::string prediction = "eps";   ///< eps, x0 or v (DDPM schedules); rf-velocity (rf)
  bool class_conditional = false;   ///< condition on the dataset's /labels (unet)
  double cfg_drop = 0.1;            ///< probability a label is replaced by "no class" in training
  // Continuous-time objectives (ncsn, ict: VE with sigma = t; trigflow, scm: TrigFlow).
  double sigma_min = 0.002;         ///< ncsn, ict: smallest noise level (the data end)
  double sigma_max = 80;            ///< ncsn, ict: largest noise level; trigflow, scm: sampling
                                    ///< starts at t = atan(sigma_max / sigma_d)
  double sigma_d = 0.5;             ///< data standard deviation of the preconditioning
  double p_mean = kObjectiveDefault;///< ict: log-normal proposal of ln sigma (iCT: -1.1); trigflow,
                                    ///< scm: of tau (sCM: -1.0); NaN = the objective's default
  double p_std = kObjectiveDefault; ///< the proposal's std (iCT: 2.0; sCM: 1.4); NaN = default
  int64_t ct_s0 = 10;               ///< ict: initial discretisation intervals
  int64_t ct_s1 = 1280;             ///< ict: final discretisation intervals
  double huber_c = 0;               ///< ict: pseudo-Huber constant (0 = 0.00054 sqrt(d))
  int64_t tangent_warmup = -1;      ///< scm: steps of the tangent warm-up (-1 = a tenth of the run)
  std::string jvp = "forward-ad";   ///< scm: forward-ad or finite-difference
  bool reflow = false;              ///< rf: train on reflow pairs, the noise end of each pair
                                    ///< regenerated from its key instead of fresh noise
  uint32_t reflow_seed = 0;         ///< rf with reflow: the pairs' noise key (from the pairs file)
  std::string reflow_pairs;         ///< rf with reflow: how the pairs were drawn (sampler, model)
  // How the model is sampled when `unidiff sample` names no sampler (model-file attributes; a
  // distilled generator records its own): empty / 0 = the objective's default.
  std::string sampler;              ///< default sampler
  int64_t sampler_steps = 0;        ///< its default steps
  std::string sampler_spacing;      ///< its default spacing on DDPM tables (leading, trailing, uniform)
  int64_t sampler_grid = 0;         ///< lcm: the consistency model's training grid (N trailing steps; 0: none)
  std::optional<double> sampler_eta; ///< its default DDIM eta (a reward-tuned policy's); unset = 0
};

struct OptimConfig {
  double lr = 1e-3;             ///< peak learning rate (AdamW)
  double beta1 = 0.9;           ///< AdamW beta1
  double beta2 = 0.999;         ///< AdamW beta2
  double weight_decay = 0.0;    ///< AdamW decoupled weight decay
  int64_t warmup_steps = 100;   ///< linear warm-up from 0 to lr over this many steps
  std::string decay = "cosine"; ///< after warm-up: constant or cosine (to 0 at the last step)
  double grad_clip = 1.0;       ///< clip the global gradient norm to this (0 = no clipping)
  double ema_decay = 0.999;     ///< EMA decay (with warm-up); 0 = EMA equals the weights
};

/// A trained group's own optimizer settings (`--<group>_optim_lr`, ...): each unset one is the
/// run's (`--optim_lr`, ...).
struct OptimOverrides {
  std::optional<double> lr, beta1, beta2, weight_decay;
  std::optional<int64_t> warmup_steps;
  std::optional<std::string> decay;
  std::optional<double> grad_clip, ema_decay;
  std::optional<bool> zero;
  /// The run's settings with these overrides applied.
  OptimConfig resolve(const OptimConfig& run) const;
};

/// How a trained group synchronises over the ranks (dist/reducer.h).
struct DistConfig {
  double bucket_mb = 25;  ///< gradient bucket size in MiB
  bool overlap = true;    ///< all-reduce buckets during backward (else all after it)
  bool zero = false;      ///< ZeRO-1: shard the optimizer state over the ranks
  bool communicate_alone = false;  ///< collectives on one rank too (tests of the path on one GPU)
  double timeout = 1800;  ///< seconds a collective may wait for the other ranks (0: forever)
};

struct DataConfig {
  std::string path;           ///< dataset file, comma list or glob
  int64_t global_batch = 512; ///< samples per step over all ranks (divisible by the ranks)
  bool stream = false;        ///< read batches from the HDF5 files instead of loading them whole
};

/// Checkpoints and resume (dist/checkpoint.h, experiments/run/checkpointing.h).
struct CheckpointConfig {
  std::string resume = "auto";     ///< auto, never, or a checkpoint / run directory
  int64_t save_every = 0;          ///< steps between checkpoints (0: at the end and on a signal)
  double save_every_minutes = 0;   ///< wall-clock minutes between checkpoints (0: off)
  int keep = 3;                    ///< newest complete checkpoints kept (0: all)
  bool allow_config_change = false;///< resume even when recorded settings differ
  int64_t stop_at = 0;             ///< checkpoint and stop after this step, as on a signal (0: off)
};

struct SampleConfig {
  std::string model = "checkpoint"; ///< "checkpoint" (a trained model) or "gmm" (analytic oracle)
  std::string gmm_file;        ///< mixture file for --model=gmm (/weights, /means, /stds)
  std::string schedule = "ddpm-linear"; ///< schedule of the oracle: ddpm-linear, ddpm-cosine, ve, rf, trigflow
  int64_t smld_inner = 20;     ///< Langevin steps per noise level (smld)
  double smld_step = 0.2;      ///< Langevin step relative to the noise: a_i / sigma_i^2 (smld)
  std::string instaflow_variant = "ddim"; ///< posterior (Alg 6), simple (Alg 7) or ddim (Alg 8)
  int64_t oracle_ode_steps = 64; ///< Heun steps of the mixture's numerical consistency function
  std::string checkpoint;      ///< a run directory or a model file
  std::string sampler;         ///< empty = the model's default (objectives/sampling/registry.h)
  int64_t steps = 0;           ///< sampling steps (0 = the model's T)
  std::string spacing;         ///< DDPM tables: leading, trailing or uniform (empty: the model's own, else leading)
  std::vector<double> cm_times;  ///< cm: the multistep times, decreasing (empty: the schedule's grid)
  std::optional<double> eta;   ///< DDIM stochasticity; unset = the model's own (a reward-tuned
                               ///< policy records the eta it was trained with), else 0
  int64_t num = 2000;          ///< samples to draw
  int64_t batch = 4096;        ///< samples per network call
  uint32_t seed = 0;           ///< key of the sampling noise
  bool use_ema = true;         ///< sample with the EMA weights
  int64_t label = -1;          ///< class of a conditional model's samples (-1: sample i gets i mod K)
  double cfg_scale = 1.0;      ///< classifier-free guidance w: uncond + w (cond - uncond); 1 = none
  std::string clip_x0 = "auto"; ///< clamp each denoised estimate x0_hat to [-1, 1]: on, off, or auto
                               ///< (on for images, whose data lie in [-1, 1]; off for vectors)
  std::string out;             ///< output HDF5 file; a PNG goes beside it
  std::string plot_reference;  ///< optional dataset drawn in grey under the samples
  int threads = 0;             ///< intra-op threads (0 = the cores this process may use)
  // How the network runs (the sampler's own arithmetic stays float32 whatever these say):
  std::string precision = "fp32"; ///< fp32, or bf16 (the network's forward pass under autocast)
  bool channels_last = false;  ///< images through the network in channels-last layout
  bool fused_group_norm = false; ///< a unet's GroupNorm (+ SiLU) pairs as one kernel each (CUDA)
  bool cudnn_benchmark = false; ///< cuDNN times its convolution algorithms on the first calls (CUDA)
};

/// A reward (experiments/reward/rewards.h): --reward=NAME and its own flags.
struct RewardConfig {
  std::string name;                ///< empty: none (a reward method refuses that; eval skips it)
  std::vector<double> target;      ///< distance: the point rewarded (empty: the origin)
  std::vector<double> direction;   ///< halfplane: d (empty: the first axis)
  double min = -std::numeric_limits<double>::infinity();  ///< halfplane: the clip
  double max = std::numeric_limits<double>::infinity();
  std::string classifier;          ///< classifier: the evaluation classifier's file
  int64_t cls = 0;                 ///< classifier: the class rewarded
};

struct EvalConfig {
  std::string samples;         ///< samples file (HDF5 /data)
  std::string reference;       ///< reference dataset
  int64_t projections = 256;   ///< sliced-Wasserstein directions
  int64_t max_samples = 5000;  ///< each set is cut to its first N samples for MMD
  uint32_t seed = 0;           ///< key of the projection directions
  std::string classifier;      ///< images: the classifier file (FD, class histogram, accuracy)
  int threads = 0;             ///< intra-op threads (0 = the cores this process may use)
  RewardConfig reward;         ///< also the samples' mean reward (reward fine-tuning's measure)
};

/// The settings tables (core/settings.h) of these structs: each setting's flag, help, checks,
/// model-file attribute and whether a resume must keep it.
const settings::Table<OptimConfig>& optim_settings();
const settings::Table<OptimOverrides>& optim_override_settings();
const settings::Table<DistConfig>& dist_settings();
const settings::Table<DataConfig>& data_settings();
const settings::Table<CheckpointConfig>& checkpoint_settings();
/// The pre-training objective's settings; those with attributes are the model file's diffusion
/// attributes.
const settings::Table<DiffusionConfig>& diffusion_settings();
const settings::Table<SampleConfig>& sample_settings();
const settings::Table<EvalConfig>& eval_settings();
const settings::Table<RewardConfig>& reward_settings();  ///< in experiments/reward/rewards.cpp

/// Flags several commands share: one declaration each (name, help, checks).
settings::Decl seed_decl();
settings::Decl threads_decl();
settings::Decl precision_decl();
settings::Decl channels_last_decl();
settings::Decl fused_group_norm_decl();
settings::Decl cudnn_benchmark_decl();

}  // namespace unidiff::experiments
