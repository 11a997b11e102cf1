// experiments/run/run_config.h.
#include "experiments/run/run_config.h"

#include "core/error.h"
#include "models/precision.h"

namespace unidiff::experiments {

const settings::Table<RunConfig>& run_settings() {
  static const settings::Table<RunConfig> t = [] {
    using settings::Decl;
    using C = RunConfig;
    namespace s = settings;
    s::Table<C> t;
    t.include(data_settings(), "", &C::data);
    t.add(Decl("method", "what train runs: a registered method (listed below with their own flags)").guarded(),
          &C::method);
    t.add(Decl("run_dir", "run directory: config.flags, metrics.jsonl, checkpoints, model.h5"), &C::run_dir);
    t.add(Decl("overwrite", "replace a finished run in --run_dir"), &C::overwrite);
    t.add(seed_decl().guarded(), &C::seed);
    t.add(Decl("train_steps", "optimizer steps").check(s::positive()), &C::steps);
    t.add(Decl("log_every", "steps between progress lines and metrics.jsonl rows").check(s::positive()),
          &C::log_every);
    t.add(Decl("tensorboard", "write every metrics.jsonl number (and each evaluation's samples picture) as a "
                              "TensorBoard event file in the run directory"),
          &C::tensorboard);
    t.add(Decl("max_nonfinite_steps", "steps with a non-finite loss or gradient that are skipped (no update of "
                                      "weights, moments or EMA; logged with their batch) before the run stops with "
                                      "exit 1")
              .check(s::non_negative()),
          &C::max_nonfinite_steps);
    t.add(Decl("replay_step",
               "replay step S of the run in --run_dir (the step a non-finite report names) from its newest "
               "checkpoint before S, or from the start, and report its loss, gradients and batch; writes nothing "
               "(0: train)")
              .check(s::non_negative()),
          &C::replay_step);
    t.include(checkpoint_settings(), "", &C::ckpt);
    t.add(Decl("eval_samples", "samples behind each distance reported during training (0 = none)")
              .check(s::non_negative()),
          &C::eval_samples);
    t.add(Decl("eval_every", "train: sample the result model every this many steps (and at the end) and log the "
                             "distance to --eval_reference (0: off)")
              .check(s::non_negative()),
          &C::eval_every);
    t.add(Decl("eval_reference", "train: the data evaluation compares with (empty: the training data)"),
          &C::eval_reference);
    t.add(Decl("eval_classifier",
               "train on images: the classifier file of the evaluation's FD ('unidiff eval train-classifier')"),
          &C::eval_classifier);
    t.add(threads_decl(), &C::threads);
    t.add(precision_decl().guarded(), &C::precision);
    t.add(channels_last_decl(), &C::channels_last);
    t.add(cudnn_benchmark_decl(), &C::cudnn_benchmark);
    t.add(Decl("cuda_graph",
               "train on CUDA (one device per rank; several ranks need NCCL): capture the whole training step "
               "(forward, backward, gradient all-reduce, AdamW, EMA) in a CUDA graph after 3 eager steps and replay "
               "it every step (same results, far fewer kernel launches from the host)"),
          &C::cuda_graph);
    t.add(fused_group_norm_decl(), &C::fused_group_norm);
    t.include(dist_settings(), "", &C::dist);
    t.include(optim_settings(), "", &C::optim);
    return t;
  }();
  return t;
}

void validate(const RunConfig& c) {
  UD_CHECK_INPUT(!c.run_dir.empty(), "--run_dir is required");
  UD_CHECK_INPUT(c.steps > 0, "--train_steps must be positive, got ", c.steps);
  UD_CHECK_INPUT(c.log_every > 0, "--log_every must be positive, got ", c.log_every);
  const OptimConfig& o = c.optim;
  UD_CHECK_INPUT(o.decay == "constant" || o.decay == "cosine", "--optim_decay '", o.decay,
                 "' is unknown (valid: constant, cosine)");
  UD_CHECK_INPUT(o.lr > 0, "--optim_lr must be positive, got ", o.lr);
  UD_CHECK_INPUT(o.ema_decay >= 0 && o.ema_decay < 1, "--ema_decay must be in [0, 1), got ", o.ema_decay);
  models::validate_precision(c.precision);
}

}  // namespace unidiff::experiments
