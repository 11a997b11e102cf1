// Configuration of runs as plain structs. "What the model is" (NetworkConfig, DiffusionConfig:
// saved with the weights, enough to rebuild it) stays apart from "how this run executes" (batch,
// steps, paths). The launcher fills these from flags; nothing here reads a flag.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "models/network.h"

namespace unidiff::experiments {

/// "Use the objective's own default" for a real-valued setting.
inline constexpr double kObjectiveDefault = std::numeric_limits<double>::quiet_NaN();

struct DiffusionConfig {
  /// The pre-training objective (experiments/objective.h): ddpm, rf, ncsn, trigflow, ict, scm;
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

/// How a trained group synchronises over the ranks (dist/reducer.h).
struct DistConfig {
  double bucket_mb = 25;  ///< gradient bucket size in MiB
  bool overlap = true;    ///< all-reduce buckets during backward (else all after it)
  bool zero = false;      ///< ZeRO-1: shard the optimizer state over the ranks
  bool communicate_alone = false;  ///< collectives on one rank too (tests of the path on one GPU)
};

struct DataConfig {
  std::string path;           ///< dataset file, comma list or glob
  int64_t global_batch = 512; ///< samples per step over all ranks (divisible by the ranks)
  bool stream = false;        ///< read batches from the HDF5 files instead of loading them whole
};

/// Progressive distillation (experiments/distill_progressive.h).
struct DistillConfig {
  std::string teacher;            ///< the teacher: a model file or a run directory (EMA weights)
  int64_t start_steps = 256;      ///< the teacher's sampling steps; round 1's student takes half
  int64_t end_steps = 1;          ///< the last round's student steps
  int64_t round_steps = 500;      ///< optimizer steps per round
  int64_t eval_samples = 2000;    ///< samples per distance in the round table (0 = no table)
};

/// Checkpoints and resume (dist/checkpoint.h, experiments/checkpointing.h).
struct CheckpointConfig {
  std::string resume = "auto";     ///< auto, never, or a checkpoint / run directory
  int64_t save_every = 0;          ///< steps between checkpoints (0: at the end and on a signal)
  double save_every_minutes = 0;   ///< wall-clock minutes between checkpoints (0: off)
  int keep = 3;                    ///< newest complete checkpoints kept (0: all)
  bool allow_config_change = false;///< resume even when recorded settings differ
  int64_t stop_at = 0;             ///< checkpoint and stop after this step, as on a signal (0: off)
};

struct TrainConfig {
  std::string run_dir;           ///< where config, metrics and weights go
  bool overwrite = false;        ///< allow replacing a finished run in run_dir
  int64_t steps = 3000;          ///< optimizer steps
  uint32_t seed = 0;             ///< the key of every random draw
  int64_t log_every = 100;       ///< steps between progress lines and metrics.jsonl rows
  int threads = 0;               ///< intra-op threads per rank (0 = cores / ranks on the host)
  std::string precision = "fp32";///< fp32, or bf16: forward and loss under bfloat16 autocast (models/precision.h)
  bool channels_last = false;    ///< images: convolution weights and inputs in channels-last layout
  bool cudnn_benchmark = false;  ///< CUDA: cuDNN autotuning (not bit-reproducible between runs)
  bool cuda_graph = false;       ///< CUDA, one rank: the whole step captured in a CUDA graph and replayed
  bool fused_group_norm = false; ///< CUDA, unet: GroupNorm (+ bias) + SiLU as one kernel (models/group_norm_act.h)
  std::string resolved_flags;    ///< the resolved command line, written to run_dir/config.flags
  DataConfig data;
  models::NetworkConfig network;
  DiffusionConfig diffusion;
  OptimConfig optim;
  DistConfig dist;
  CheckpointConfig ckpt;
  std::string method = "ddpm";   ///< ddpm (pre-training) or progressive (distillation)
  std::string init_from;         ///< start from these weights (a model file or run directory, EMA)
  int64_t eval_every = 0;        ///< evaluate the EMA weights every this many steps (0: off)
  std::string eval_reference;    ///< what samples are compared with (empty: the training data)
  std::string eval_classifier;   ///< images: the classifier of the FD (unidiff eval train-classifier)
  DistillConfig distill;
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
  std::string sampler;         ///< empty = the model's default (objective.h); see sampler_names
  int64_t steps = 0;           ///< sampling steps (0 = the model's T)
  std::string spacing = "leading"; ///< timestep spacing on a subsequence: leading or trailing
  std::vector<double> cm_times;  ///< cm: the multistep times, decreasing (empty: the schedule's grid)
  double eta = 0.0;            ///< DDIM stochasticity
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

struct EvalConfig {
  std::string samples;         ///< samples file (HDF5 /data)
  std::string reference;       ///< reference dataset
  int64_t projections = 256;   ///< sliced-Wasserstein directions
  int64_t max_samples = 5000;  ///< each set is cut to its first N samples for MMD
  uint32_t seed = 0;           ///< key of the projection directions
  std::string classifier;      ///< images: the classifier file (FD, class histogram, accuracy)
  int threads = 0;             ///< intra-op threads (0 = the cores this process may use)
};

}  // namespace unidiff::experiments
