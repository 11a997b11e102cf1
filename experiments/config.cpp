// experiments/config.h: the settings tables.
#include "experiments/config.h"

#include <cstdint>
#include <limits>

namespace unidiff::experiments {

using settings::Decl;
namespace s = settings;

OptimConfig OptimOverrides::resolve(const OptimConfig& run) const {
  OptimConfig o = run;
  if (lr) o.lr = *lr;
  if (beta1) o.beta1 = *beta1;
  if (beta2) o.beta2 = *beta2;
  if (weight_decay) o.weight_decay = *weight_decay;
  if (warmup_steps) o.warmup_steps = *warmup_steps;
  if (decay) o.decay = *decay;
  if (grad_clip) o.grad_clip = *grad_clip;
  if (ema_decay) o.ema_decay = *ema_decay;
  return o;
}

Decl seed_decl() { return Decl("seed", "key of every random draw (0..4294967295)"); }
Decl threads_decl() {
  return Decl("threads", "intra-op threads per rank (0 = $OMP_NUM_THREADS if set, else cores on the host / ranks on the host)")
      .check(s::non_negative());
}
Decl precision_decl() {
  return Decl("precision",
              "train: fp32, or bf16 (forward pass and loss under bfloat16 autocast; weights, gradients, optimizer "
              "and EMA stay float32); sample: the network's forward pass in fp32 or under bf16 autocast (the "
              "sampler's arithmetic stays float32)");
}
Decl channels_last_decl() {
  return Decl("channels_last", "train, sample: images in channels-last (NHWC) layout, with the convolution weights");
}
Decl fused_group_norm_decl() {
  return Decl("fused_group_norm",
              "train, sample on CUDA with a unet: every GroupNorm with the SiLU after it (and the time embedding "
              "added before it) as one fused kernel that keeps bfloat16 activations in bfloat16 (less memory "
              "traffic; the same results up to rounding)");
}
Decl cudnn_benchmark_decl() {
  return Decl("cudnn_benchmark",
              "train, sample on CUDA: let cuDNN time its convolution algorithms on the first steps and keep the "
              "fastest (faster; the chosen algorithms, so the last bits, may differ between runs)");
}

const s::Table<OptimConfig>& optim_settings() {
  static const s::Table<OptimConfig> t = [] {
    s::Table<OptimConfig> t;
    t.add(Decl("optim_lr", "peak learning rate (AdamW)").guarded().check(s::positive()), &OptimConfig::lr);
    t.add(Decl("optim_beta1", "AdamW beta1").guarded().check(s::unit_interval()), &OptimConfig::beta1);
    t.add(Decl("optim_beta2", "AdamW beta2").guarded().check(s::unit_interval()), &OptimConfig::beta2);
    t.add(Decl("optim_weight_decay", "AdamW decoupled weight decay").guarded().check(s::non_negative()),
          &OptimConfig::weight_decay);
    t.add(Decl("optim_warmup", "linear learning-rate warm-up steps").guarded().check(s::non_negative()),
          &OptimConfig::warmup_steps);
    t.add(Decl("optim_decay", "learning-rate decay after warm-up: constant or cosine").guarded(), &OptimConfig::decay);
    t.add(Decl("optim_grad_clip", "clip the global gradient norm (0 = off)").guarded().check(s::non_negative()),
          &OptimConfig::grad_clip);
    t.add(Decl("ema_decay", "EMA decay of the weights, with warm-up (0 = no averaging)").guarded().check(
              s::unit_interval()),
          &OptimConfig::ema_decay);
    return t;
  }();
  return t;
}

const s::Table<OptimOverrides>& optim_override_settings() {
  static const s::Table<OptimOverrides> t = [] {
    const std::string run = " (empty: the run's --";
    s::Table<OptimOverrides> t;
    t.add(Decl("optim_lr", "this group's peak learning rate" + run + "optim_lr)").guarded().check(s::positive()),
          &OptimOverrides::lr);
    t.add(Decl("optim_beta1", "this group's AdamW beta1" + run + "optim_beta1)").guarded().check(s::unit_interval()),
          &OptimOverrides::beta1);
    t.add(Decl("optim_beta2", "this group's AdamW beta2" + run + "optim_beta2)").guarded().check(s::unit_interval()),
          &OptimOverrides::beta2);
    t.add(Decl("optim_weight_decay", "this group's weight decay" + run + "optim_weight_decay)")
              .guarded()
              .check(s::non_negative()),
          &OptimOverrides::weight_decay);
    t.add(Decl("optim_warmup", "this group's warm-up steps" + run + "optim_warmup)").guarded().check(
              s::non_negative()),
          &OptimOverrides::warmup_steps);
    t.add(Decl("optim_decay", "this group's decay, constant or cosine" + run + "optim_decay)").guarded(),
          &OptimOverrides::decay);
    t.add(Decl("optim_grad_clip", "this group's gradient clipping" + run + "optim_grad_clip)")
              .guarded()
              .check(s::non_negative()),
          &OptimOverrides::grad_clip);
    t.add(Decl("ema_decay", "this group's EMA decay" + run + "ema_decay)").guarded().check(s::unit_interval()),
          &OptimOverrides::ema_decay);
    t.add(Decl("optim_zero", "this group's ZeRO-1 sharding" + run + "optim_zero)"), &OptimOverrides::zero);
    return t;
  }();
  return t;
}

const s::Table<DistConfig>& dist_settings() {
  static const s::Table<DistConfig> t = [] {
    s::Table<DistConfig> t;
    t.add(Decl("dist_bucket_mb", "gradient bucket size in MiB (all-reduced as soon as its gradients are ready)")
              .check(s::positive()),
          &DistConfig::bucket_mb);
    t.add(Decl("dist_overlap", "overlap gradient all-reduce with backward (false: all buckets after backward)"),
          &DistConfig::overlap);
    t.add(Decl("optim_zero", "ZeRO-1: shard the optimizer state over the ranks (reduce-scatter, all-gather)"),
          &DistConfig::zero);
    t.add(Decl("dist_timeout",
               "seconds a collective may wait for the other ranks before the job ends naming the ranks that did "
               "not arrive (0: wait forever)")
              .check(s::non_negative())
              .check(s::at_most(7 * 24 * 3600.0)),
          &DistConfig::timeout);
    return t;
  }();
  return t;
}

const s::Table<DataConfig>& data_settings() {
  static const s::Table<DataConfig> t = [] {
    s::Table<DataConfig> t;
    t.add(Decl("data", "dataset: an HDF5 file, a comma list of shard files, or a glob"), &DataConfig::path);
    t.add(Decl("data_batch", "global batch size over all ranks (divisible by the ranks)").guarded().check(
              s::positive()),
          &DataConfig::global_batch);
    t.add(Decl("data_stream",
               "read batches from the HDF5 files (datasets larger than memory) instead of loading them whole"),
          &DataConfig::stream);
    return t;
  }();
  return t;
}

const s::Table<CheckpointConfig>& checkpoint_settings() {
  static const s::Table<CheckpointConfig> t = [] {
    s::Table<CheckpointConfig> t;
    t.add(Decl("resume", "auto (the newest complete checkpoint in --run_dir, if any), never, or a checkpoint / run "
                         "directory"),
          &CheckpointConfig::resume);
    t.add(Decl("save_every", "checkpoint every this many steps (0: only at the end and on SIGTERM/SIGUSR1)")
              .check(s::non_negative()),
          &CheckpointConfig::save_every);
    t.add(Decl("save_every_minutes", "also checkpoint every this many minutes of wall time (0: off)")
              .check(s::non_negative()),
          &CheckpointConfig::save_every_minutes);
    t.add(Decl("keep_checkpoints", "newest complete checkpoints kept in RUN_DIR/checkpoints (0: all)")
              .check(s::non_negative()),
          &CheckpointConfig::keep);
    t.add(Decl("allow_config_change", "resume even when the checkpoint was made with other settings"),
          &CheckpointConfig::allow_config_change);
    t.add(Decl("train_stop_at", "checkpoint and stop after this step, as on SIGTERM (0: off)").check(s::non_negative()),
          &CheckpointConfig::stop_at);
    return t;
  }();
  return t;
}

const s::Table<DiffusionConfig>& diffusion_settings() {
  static const s::Table<DiffusionConfig> t = [] {
    using D = DiffusionConfig;
    s::Table<D> t;
    t.add(Decl("objective", "pre-training objective: ddpm, rf, ncsn, trigflow, ict, scm (empty: ddpm, or rf with "
                            "--diffusion_schedule=rf)")
              .guarded()
              .attr("objective"),
          &D::objective);
    t.add(Decl("diffusion_schedule",
               "DDPM beta schedule (linear, cosine, scaled-linear), or rf for rectified flow / flow matching")
              .guarded()
              .attr("schedule").required(),
          &D::schedule);
    t.add(Decl("rf_time", "rf: training times uniform or logit-normal in (0, 1), or one (t = 1: one-step "
                          "distillation on reflow pairs); ddpm: uniform, or one (t = T - 1)")
              .guarded(),
          &D::rf_time);
    // Past 100,000 steps the linear schedules' alpha-bar underflows to 0 and sampling gives NaN.
    t.add(Decl("diffusion_steps", "T, the number of discrete diffusion steps (at most 100,000)")
              .guarded()
              .attr("timesteps")
              .required()
              .check(s::positive())
              .check(s::at_most(100000)),
          &D::timesteps);
    t.add(Decl("diffusion_beta_start", "first beta of the linear schedules").guarded().attr("beta_start").required().check(
              s::positive()),
          &D::beta_start);
    t.add(Decl("diffusion_beta_end", "last beta of the linear schedules").guarded().attr("beta_end").required().check(
              s::positive()),
          &D::beta_end);
    t.add(Decl("prediction", "what the network predicts: eps, x0, v (alpha eps - sigma x0) or instaflow (w = x0 - eps on x^RF; ddpm)").guarded().attr(
              "prediction").required(),
          &D::prediction);
    t.add(Decl("class_conditional",
               "condition the network on the dataset's /labels (unet), with label dropout for guidance")
              .guarded(),
          &D::class_conditional);
    t.add(Decl("cfg_drop", "class_conditional: probability a training label is replaced by 'no class'")
              .guarded()
              .check(s::unit_interval()),
          &D::cfg_drop);
    t.add(Decl("sigma_min", "ncsn, ict: smallest noise level sigma (the data end)").guarded().attr("sigma_min").check(
              s::positive()),
          &D::sigma_min);
    t.add(Decl("sigma_max", "ncsn, ict: largest noise level; trigflow, scm: sampling starts at t = atan(sigma_max / "
                            "sigma_data)")
              .guarded()
              .attr("sigma_max")
              .check(s::positive()),
          &D::sigma_max);
    t.add(Decl("sigma_data", "ncsn, trigflow, ict, scm: data standard deviation of the preconditioning")
              .guarded()
              .attr("sigma_d")
              .check(s::positive()),
          &D::sigma_d);
    t.add(Decl("p_mean", "ict: mean of the log-normal proposal of sigma (default -1.1); trigflow, scm: of tau "
                         "(default -1.0)")
              .guarded(),
          &D::p_mean);
    t.add(Decl("p_std", "ict, trigflow, scm: std of that proposal (defaults 2.0 and 1.4)").guarded(), &D::p_std);
    t.add(Decl("ct_s0", "ict: discretisation intervals at the start of the curriculum").guarded().check(s::positive()),
          &D::ct_s0);
    t.add(Decl("ct_s1", "ict: discretisation intervals at its end (doubling in between)").guarded().check(
              s::positive()),
          &D::ct_s1);
    t.add(Decl("huber_c", "ict: pseudo-Huber constant (0 = 0.00054 sqrt(elements of a sample))")
              .guarded()
              .check(s::non_negative()),
          &D::huber_c);
    t.add(Decl("tangent_warmup", "scm: steps of the tangent warm-up (-1 = a tenth of --train_steps)").guarded(),
          &D::tangent_warmup);
    t.add(Decl("jvp", "scm: how dF/dt is computed: forward-ad (dual tensors) or finite-difference (central)")
              .guarded(),
          &D::jvp);
    t.add(Decl("reflow", "rf, ddpm: train on reflow pairs (--data = deterministic samples of a flow or of a DDPM "
                         "teacher from 'unidiff sample'; the noise end of each pair is regenerated from its key)")
              .guarded(),
          &D::reflow);
    t.add(Decl("", "the reflow pairs' noise key (from the pairs file)").guarded().attr("reflow_seed"), &D::reflow_seed);
    t.add(Decl("", "how the reflow pairs were drawn (from the pairs file)").attr("reflow_pairs"), &D::reflow_pairs);
    // Attributes only: how the model file says it is sampled by default.
    t.add(Decl("", "the model's default sampler").attr("sampler"), &D::sampler);
    t.add(Decl("", "the model's default sampling steps").attr("sampler_steps"), &D::sampler_steps);
    t.add(Decl("", "the model's default spacing").attr("sampler_spacing"), &D::sampler_spacing);
    t.add(Decl("", "the lcm sampler's grid: a consistency model's N trailing training steps (0: none)")
              .attr("sampler_grid"),
          &D::sampler_grid);
    t.add(Decl("", "the model's default DDIM eta").attr("sampler_eta"), &D::sampler_eta);
    return t;
  }();
  return t;
}

const s::Table<SampleConfig>& sample_settings() {
  static const s::Table<SampleConfig> t = [] {
    using C = SampleConfig;
    s::Table<C> t;
    t.add(Decl("model", "what to sample: checkpoint (a trained model) or gmm (the analytic mixture oracle)"),
          &C::model);
    t.add(Decl("checkpoint", "a run directory or a model file (model.h5)"), &C::checkpoint);
    t.add(Decl("gmm_file", "Gaussian-mixture file (HDF5 /weights [K], /means [K, D], /stds [K, D])"), &C::gmm_file);
    t.add(Decl("schedule", "schedule of the gmm oracle: ddpm-linear, ddpm-cosine, ddpm-scaled-linear, ve, rf, "
                           "trigflow"),
          &C::schedule);
    t.add(Decl("sampler", "sampler (empty: the model's default): ddpm, ddim (ddpm models, ddim also rf, ncsn, "
                          "trigflow); euler, heun (rf, ncsn, trigflow); smld (ncsn); cm (ict, scm); with --model=gmm "
                          "also ddpm-simple, instaflow, lcm, trigflow, fewstep"),
          &C::sampler);
    t.add(Decl("steps", "sampling steps (0 = the model's default: all of T for DDPM models)").check(s::non_negative()),
          &C::steps);
    t.add(Decl("spacing", "timestep spacing when steps < T: leading, trailing, or uniform (real-valued (T-1) k / N, "
                          "ddim only); empty: the model's own (a distilled student's), else leading"),
          &C::spacing);
    t.add(Decl("eta", "DDIM stochasticity (0 = deterministic, 1 = DDPM-like); default: the model's own (a "
                      "reward-tuned policy's), else 0")
              .check(s::non_negative()),
          &C::eta);
    t.add(Decl("num", "number of samples").check(s::positive()), &C::num);
    t.add(Decl("sample_batch", "samples per network call").check(s::positive()), &C::batch);
    t.add(seed_decl(), &C::seed);
    t.add(Decl("use_ema", "sample with the EMA weights"), &C::use_ema);
    t.add(Decl("out", "output HDF5 file"), &C::out);
    t.add(Decl("plot_reference", "dataset drawn in grey under the samples in the PNG"), &C::plot_reference);
    t.add(Decl("smld_inner", "annealed Langevin steps per noise level (smld)").check(s::positive()), &C::smld_inner);
    t.add(Decl("smld_step", "annealed Langevin step relative to the noise level, a_i / sigma_i^2 (smld)")
              .check(s::positive()),
          &C::smld_step);
    t.add(Decl("instaflow_variant", "InstaFlow update: posterior (Alg 6), simple (Alg 7), ddim (Alg 8)"),
          &C::instaflow_variant);
    t.add(Decl("oracle_ode_steps", "Heun steps of the mixture oracle's numerical consistency function")
              .check(s::positive()),
          &C::oracle_ode_steps);
    t.add(Decl("label", "sample: the class of a conditional model's samples (-1: sample i gets class i mod K)"),
          &C::label);
    t.add(Decl("cfg_scale", "sample: classifier-free guidance w, uncond + w (cond - uncond); 1 = no guidance"),
          &C::cfg_scale);
    t.add(Decl("cm_times", "cm: the multistep times, comma-separated and decreasing (ict: sigmas, e.g. 80,0.8; scm: "
                           "TrigFlow t); empty: the schedule's grid"),
          &C::cm_times);
    t.add(Decl("clip_x0", "sample: clamp every denoised estimate x0_hat to [-1, 1] inside the sampler: on, off, or "
                          "auto (on for images, off for vectors)"),
          &C::clip_x0);
    t.add(threads_decl(), &C::threads);
    t.add(precision_decl(), &C::precision);
    t.add(channels_last_decl(), &C::channels_last);
    t.add(fused_group_norm_decl(), &C::fused_group_norm);
    t.add(cudnn_benchmark_decl(), &C::cudnn_benchmark);
    return t;
  }();
  return t;
}

const s::Table<EvalConfig>& eval_settings() {
  static const s::Table<EvalConfig> t = [] {
    using C = EvalConfig;
    s::Table<C> t;
    t.add(Decl("samples", "samples file (HDF5 with /data)"), &C::samples);
    t.add(Decl("reference", "reference dataset (HDF5 with /data)"), &C::reference);
    t.add(Decl("projections", "sliced-Wasserstein projection directions").check(s::positive()), &C::projections);
    t.add(Decl("max_samples", "samples of each set used for the MMD").check(s::positive()), &C::max_samples);
    t.add(seed_decl(), &C::seed);
    t.add(Decl("classifier", "eval: the classifier file for images (FD of its features, class histogram and "
                             "accuracy); make one with 'unidiff eval train-classifier'"),
          &C::classifier);
    t.add(threads_decl(), &C::threads);
    t.include(reward_settings(), "", &C::reward);
    return t;
  }();
  return t;
}

}  // namespace unidiff::experiments
