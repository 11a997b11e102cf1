// What every training run shares, whatever its method: where it writes, how long it runs, its
// ranks, data, optimizer defaults, checkpoints and evaluation. A method adds its own settings
// (experiments/run/method.h). Declared once in run_settings().
#pragma once

#include <cstdint>
#include <string>

#include "core/settings.h"
#include "experiments/config.h"

namespace unidiff::experiments {

struct RunConfig {
  std::string method = "pretrain";  ///< the registered method (experiments/run/method.h)
  std::string run_dir = "runs/default";  ///< where config, metrics, checkpoints and weights go
  bool overwrite = false;        ///< allow replacing a finished run in run_dir
  int64_t steps = 3000;          ///< optimizer steps (a method may derive its own count)
  uint32_t seed = 0;             ///< the key of every random draw
  int64_t log_every = 100;       ///< steps between progress lines and metrics.jsonl rows
  bool tensorboard = true;       ///< also write the rows as TensorBoard events in the run directory
  int64_t replay_step = 0;           ///< > 0: replay this step of the run and report it; write nothing
  int64_t max_nonfinite_steps = 10;  ///< skipped non-finite steps tolerated before the run stops (exit 1)
  int threads = 0;               ///< intra-op threads per rank (0 = cores / ranks on the host)
  std::string precision = "fp32";///< fp32, or bf16: forward and loss under bfloat16 autocast (models/precision.h)
  bool channels_last = false;    ///< images: convolution weights and inputs in channels-last layout
  bool cudnn_benchmark = false;  ///< CUDA: cuDNN autotuning (not bit-reproducible between runs)
  bool cuda_graph = false;       ///< CUDA: the whole step captured in a CUDA graph and replayed
  bool fused_group_norm = false; ///< CUDA, unet: GroupNorm (+ bias) + SiLU as one kernel
  DataConfig data;
  OptimConfig optim;             ///< every trained group's defaults (--<group>_optim_* override)
  DistConfig dist;
  CheckpointConfig ckpt;
  int64_t eval_every = 0;        ///< evaluate the result model every this many steps (0: off)
  int64_t eval_samples = 2000;   ///< samples behind each reported distance (0: none)
  std::string eval_reference;    ///< what samples are compared with (empty: the training data)
  std::string eval_classifier;   ///< images: the classifier of the FD (unidiff eval train-classifier)
  std::string resolved_flags;    ///< the resolved command line, written to run_dir/config.flags
};

const settings::Table<RunConfig>& run_settings();

/// Refuses settings no run can take (InputError naming the flag); methods check their own.
void validate(const RunConfig& config);

}  // namespace unidiff::experiments
