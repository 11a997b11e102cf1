// Flag definitions (gflags), their validators, and the one function per command that turns them
// into config structs. Prefixes name the concern: data_, model_, diffusion_, optim_, ema_, train_.
#include "launcher/flags.h"

#include <gflags/gflags.h>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"

namespace {

bool positive(const char*, int64_t v) { return v > 0; }
bool non_negative(const char*, int64_t v) { return v >= 0; }
bool positive_double(const char*, double v) { return v > 0; }
bool non_negative_double(const char*, double v) { return v >= 0; }
bool unit_interval(const char*, double v) { return v >= 0 && v < 1; }
bool seed_range(const char*, int64_t v) {
  return v >= 0 && v <= static_cast<int64_t>(std::numeric_limits<uint32_t>::max());
}

}  // namespace

// --- shared ---
DEFINE_int64(seed, 0, "key of every random draw (0..4294967295)");
DEFINE_validator(seed, &seed_range);

// --- train ---
DEFINE_string(run_dir, "runs/default", "run directory: config.flags, metrics.jsonl, model.h5");
DEFINE_bool(overwrite, false, "replace a finished run in --run_dir");
DEFINE_string(data, "", "dataset: an HDF5 file, a comma list of shard files, or a glob");
DEFINE_int64(data_batch, 512, "global batch size over all ranks (divisible by the ranks)");
DEFINE_validator(data_batch, &positive);
DEFINE_bool(data_stream, false, "read batches from the HDF5 files (datasets larger than memory) instead of loading them whole");
DEFINE_string(model_arch, "mlp", "network architecture: mlp (vectors), unet, dit (width --model_hidden), dit-s, dit-b (images, latents)");
DEFINE_int64(model_hidden, 256, "hidden width");
DEFINE_validator(model_hidden, &positive);
DEFINE_int64(model_layers, 3, "hidden layers");
DEFINE_validator(model_layers, &positive);
DEFINE_int64(model_time_dim, 64, "size of the sinusoidal time embedding (even)");
DEFINE_validator(model_time_dim, &positive);
DEFINE_int64(model_fourier, 0, "mlp: K octaves of input Fourier features [x, sin(2^k pi x), cos(2^k pi x)], k < K (0: x alone)");
DEFINE_int64(model_channels, 128, "unet: base width (a multiple of 32)");
DEFINE_string(model_mult, "1,2,2,2", "unet: width multiplier per level, comma-separated");
DEFINE_int64(model_res_blocks, 2, "unet: residual blocks per level");
DEFINE_string(model_attn_res, "16", "unet: resolutions with self-attention, comma-separated (empty: none)");
DEFINE_double(model_dropout, 0.1, "unet: dropout in the residual blocks");
DEFINE_int64(model_depth, 12, "dit: transformer blocks (dit-s and dit-b: 12)");
DEFINE_validator(model_depth, &positive);
DEFINE_int64(model_heads, 6, "dit: attention heads (dit-s: 6, dit-b: 12)");
DEFINE_validator(model_heads, &positive);
DEFINE_int64(model_patch, 2, "dit, dit-s, dit-b: patch side (2 or 4 for the standard sizes)");
DEFINE_validator(model_patch, &positive);
DEFINE_string(diffusion_schedule, "linear", "DDPM beta schedule (linear, cosine, scaled-linear), or rf for rectified flow / flow matching");
DEFINE_bool(class_conditional, false, "condition the network on the dataset's /labels (unet), with label dropout for guidance");
DEFINE_double(cfg_drop, 0.1, "class_conditional: probability a training label is replaced by 'no class'");
DEFINE_int64(label, -1, "sample: the class of a conditional model's samples (-1: sample i gets class i mod K)");
DEFINE_string(clip_x0, "auto", "sample: clamp every denoised estimate x0_hat to [-1, 1] inside the sampler: on, off, or auto (on for images, off for vectors)");
DEFINE_double(cfg_scale, 1.0, "sample: classifier-free guidance w, uncond + w (cond - uncond); 1 = no guidance");
DEFINE_string(rf_time, "uniform", "rf: training times uniform or logit-normal in (0, 1), or one (t = 1: one-step distillation on reflow pairs)");
DEFINE_string(objective, "", "pre-training objective: ddpm, rf, ncsn, trigflow, ict, scm (empty: ddpm, or rf with --diffusion_schedule=rf)");
DEFINE_double(sigma_min, 0.002, "ncsn, ict: smallest noise level sigma (the data end)");
DEFINE_validator(sigma_min, &positive_double);
DEFINE_double(sigma_max, 80, "ncsn, ict: largest noise level; trigflow, scm: sampling starts at t = atan(sigma_max / sigma_data)");
DEFINE_validator(sigma_max, &positive_double);
DEFINE_double(sigma_data, 0.5, "ncsn, trigflow, ict, scm: data standard deviation of the preconditioning");
DEFINE_validator(sigma_data, &positive_double);
DEFINE_double(p_mean, std::numeric_limits<double>::quiet_NaN(), "ict: mean of the log-normal proposal of sigma (default -1.1); trigflow, scm: of tau (default -1.0)");
DEFINE_double(p_std, std::numeric_limits<double>::quiet_NaN(), "ict, trigflow, scm: std of that proposal (defaults 2.0 and 1.4)");
DEFINE_int64(ct_s0, 10, "ict: discretisation intervals at the start of the curriculum");
DEFINE_validator(ct_s0, &positive);
DEFINE_int64(ct_s1, 1280, "ict: discretisation intervals at its end (doubling in between)");
DEFINE_validator(ct_s1, &positive);
DEFINE_double(huber_c, 0, "ict: pseudo-Huber constant (0 = 0.00054 sqrt(elements of a sample))");
DEFINE_validator(huber_c, &non_negative_double);
DEFINE_int64(tangent_warmup, -1, "scm: steps of the tangent warm-up (-1 = a tenth of --train_steps)");
DEFINE_string(jvp, "forward-ad", "scm: how dF/dt is computed: forward-ad (dual tensors) or finite-difference (central)");
DEFINE_bool(reflow, false, "rf: train on reflow pairs (--data = samples of a flow from 'unidiff sample'; the noise end of each pair is regenerated from its key)");
DEFINE_string(init_from, "", "start from these weights (a model file or run directory; EMA weights); the architecture must match");
DEFINE_int64(diffusion_steps, 1000, "T, the number of discrete diffusion steps");
DEFINE_validator(diffusion_steps, &positive);
DEFINE_double(diffusion_beta_start, 1e-4, "first beta of the linear schedules");
DEFINE_validator(diffusion_beta_start, &positive_double);
DEFINE_double(diffusion_beta_end, 0.02, "last beta of the linear schedules");
DEFINE_validator(diffusion_beta_end, &positive_double);
DEFINE_string(prediction, "eps", "what the network predicts: eps, x0 or v (alpha eps - sigma x0)");
DEFINE_double(optim_lr, 1e-3, "peak learning rate (AdamW)");
DEFINE_validator(optim_lr, &positive_double);
DEFINE_double(optim_beta1, 0.9, "AdamW beta1");
DEFINE_validator(optim_beta1, &unit_interval);
DEFINE_double(optim_beta2, 0.999, "AdamW beta2");
DEFINE_validator(optim_beta2, &unit_interval);
DEFINE_double(optim_weight_decay, 0.0, "AdamW decoupled weight decay");
DEFINE_validator(optim_weight_decay, &non_negative_double);
DEFINE_int64(optim_warmup, 100, "linear learning-rate warm-up steps");
DEFINE_validator(optim_warmup, &non_negative);
DEFINE_string(optim_decay, "cosine", "learning-rate decay after warm-up: constant or cosine");
DEFINE_double(optim_grad_clip, 1.0, "clip the global gradient norm (0 = off)");
DEFINE_validator(optim_grad_clip, &non_negative_double);
DEFINE_double(ema_decay, 0.999, "EMA decay of the weights, with warm-up (0 = no averaging)");
DEFINE_validator(ema_decay, &unit_interval);
DEFINE_int64(train_steps, 3000, "optimizer steps");
DEFINE_string(resume, "auto", "auto (the newest complete checkpoint in --run_dir, if any), never, or a checkpoint / run directory");
DEFINE_int64(save_every, 0, "checkpoint every this many steps (0: only at the end and on SIGTERM/SIGUSR1)");
DEFINE_validator(save_every, &non_negative);
DEFINE_double(save_every_minutes, 0, "also checkpoint every this many minutes of wall time (0: off)");
DEFINE_validator(save_every_minutes, &non_negative_double);
DEFINE_int32(keep_checkpoints, 3, "newest complete checkpoints kept in RUN_DIR/checkpoints (0: all)");
DEFINE_bool(allow_config_change, false, "resume even when the checkpoint was made with other settings");
DEFINE_int64(train_stop_at, 0, "checkpoint and stop after this step, as on SIGTERM (0: off)");
DEFINE_validator(train_stop_at, &non_negative);
DEFINE_string(method, "ddpm", "what train runs: ddpm (pre-training) or progressive (progressive distillation of --pd_teacher)");
DEFINE_string(pd_teacher, "", "progressive distillation: the teacher (a model file or run directory; EMA weights)");
DEFINE_int64(pd_start_steps, 256, "progressive distillation: the teacher's sampling steps (a power of two; round 1's student takes half)");
DEFINE_int64(pd_end_steps, 1, "progressive distillation: the last round's student steps (a power of two)");
DEFINE_int64(pd_round_steps, 500, "progressive distillation: optimizer steps per round");
DEFINE_int64(eval_samples, 2000, "samples behind each distance reported during training (0 = none)");
DEFINE_int64(eval_every, 0, "train: sample the EMA weights every this many steps (and at the end) and log the distance to --eval_reference (0: off)");
DEFINE_validator(eval_every, &non_negative);
DEFINE_string(eval_reference, "", "train: the data evaluation compares with (empty: the training data)");
DEFINE_string(eval_classifier, "", "train on images: the classifier file of the evaluation's FD ('unidiff eval train-classifier')");
DEFINE_validator(train_steps, &positive);
DEFINE_int64(log_every, 100, "steps between progress lines and metrics.jsonl rows");
DEFINE_validator(log_every, &positive);
DEFINE_double(dist_bucket_mb, 25, "gradient bucket size in MiB (all-reduced as soon as its gradients are ready)");
DEFINE_validator(dist_bucket_mb, &positive_double);
DEFINE_bool(dist_overlap, true, "overlap gradient all-reduce with backward (false: all buckets after backward)");
DEFINE_bool(optim_zero, false, "ZeRO-1: shard the optimizer state over the ranks (reduce-scatter, all-gather)");
DEFINE_string(precision, "fp32", "train: fp32, or bf16 (forward pass and loss under bfloat16 autocast; weights, gradients, optimizer and EMA stay float32); sample: the network's forward pass in fp32 or under bf16 autocast (the sampler's arithmetic stays float32)");
DEFINE_bool(channels_last, false, "train, sample: images in channels-last (NHWC) layout, with the convolution weights");
DEFINE_bool(cuda_graph, false, "train on CUDA (one device per rank; several ranks need NCCL): capture the whole training step (forward, backward, gradient all-reduce, AdamW, EMA) in a CUDA graph after 3 eager steps and replay it every step (same results, far fewer kernel launches from the host)");
DEFINE_bool(fused_group_norm, false, "train, sample on CUDA with a unet: every GroupNorm with the SiLU after it (and the time embedding added before it) as one fused kernel that keeps bfloat16 activations in bfloat16 (less memory traffic; the same results up to rounding)");
DEFINE_bool(cudnn_benchmark, false, "train, sample on CUDA: let cuDNN time its convolution algorithms on the first steps and keep the fastest (faster; the chosen algorithms, so the last bits, may differ between runs)");
DEFINE_int64(threads, 0, "intra-op threads per rank (0 = $OMP_NUM_THREADS if set, else cores on the host / ranks on the host)");
DEFINE_validator(threads, &non_negative);

// --- sample ---
DEFINE_string(model, "checkpoint", "what to sample: checkpoint (a trained model) or gmm (the analytic mixture oracle)");
DEFINE_string(gmm_file, "", "Gaussian-mixture file (HDF5 /weights [K], /means [K, D], /stds [K, D])");
DEFINE_string(schedule, "ddpm-linear", "schedule of the gmm oracle: ddpm-linear, ddpm-cosine, ddpm-scaled-linear, ve, rf, trigflow");
DEFINE_int64(smld_inner, 20, "annealed Langevin steps per noise level (smld)");
DEFINE_validator(smld_inner, &positive);
DEFINE_double(smld_step, 0.2, "annealed Langevin step relative to the noise level, a_i / sigma_i^2 (smld)");
DEFINE_validator(smld_step, &positive_double);
DEFINE_string(instaflow_variant, "ddim", "InstaFlow update: posterior (Alg 6), simple (Alg 7), ddim (Alg 8)");
DEFINE_int64(oracle_ode_steps, 64, "Heun steps of the mixture oracle's numerical consistency function");
DEFINE_validator(oracle_ode_steps, &positive);
DEFINE_string(checkpoint, "", "a run directory or a model file (model.h5)");
DEFINE_string(sampler, "", "sampler (empty: the model's default): ddpm, ddim (ddpm models); euler, heun (rf, ncsn, trigflow); smld (ncsn); cm (ict, scm); with --model=gmm also ddpm-simple, instaflow, lcm, trigflow, fewstep");
DEFINE_int64(steps, 0, "sampling steps (0 = all of the model's T)");
DEFINE_validator(steps, &non_negative);
DEFINE_string(classifier, "", "eval: the classifier file for images (FD of its features, class histogram and accuracy); make one with 'unidiff eval train-classifier'");
DEFINE_int64(classifier_epochs, 5, "eval train-classifier: passes over --data");
DEFINE_validator(classifier_epochs, &positive);
DEFINE_int64(classifier_batch, 128, "eval train-classifier: images per step");
DEFINE_validator(classifier_batch, &positive);
DEFINE_string(cm_times, "", "cm: the multistep times, comma-separated and decreasing (ict: sigmas, e.g. 80,0.8; scm: TrigFlow t); empty: the schedule's grid");
DEFINE_string(spacing, "leading", "timestep spacing when steps < T: leading or trailing");
DEFINE_double(eta, 0.0, "DDIM stochasticity (0 = deterministic, 1 = DDPM-like)");
DEFINE_validator(eta, &non_negative_double);
DEFINE_int64(num, 2000, "number of samples");
DEFINE_validator(num, &positive);
DEFINE_int64(sample_batch, 4096, "samples per network call");
DEFINE_validator(sample_batch, &positive);
DEFINE_bool(use_ema, true, "sample with the EMA weights");
DEFINE_string(out, "", "output HDF5 file");
DEFINE_string(plot_reference, "", "dataset drawn in grey under the samples in the PNG");

// --- eval ---
DEFINE_string(samples, "", "samples file (HDF5 with /data)");
DEFINE_string(reference, "", "reference dataset (HDF5 with /data)");
DEFINE_int64(projections, 256, "sliced-Wasserstein projection directions");
DEFINE_validator(projections, &positive);
DEFINE_int64(max_samples, 5000, "samples of each set used for the MMD");
DEFINE_validator(max_samples, &positive);

// --- data ---
DEFINE_int64(shards, 1, "number of shard files to write (1 = one file at --out)");
DEFINE_validator(shards, &positive);
DEFINE_string(split, "train", "Fashion-MNIST split: train (60,000) or test (10,000)");
DEFINE_int64(pad, 0, "zero pixels added on each side (2 makes Fashion-MNIST 32x32)");
DEFINE_validator(pad, &non_negative);
DEFINE_string(fashion_mnist_dir, "/usr/share/datasets/fashion-mnist", "folder of the Fashion-MNIST IDX .gz files");
DEFINE_string(dir, "", "folder of .png/.jpg images, one sub-folder per class (or none: unlabelled)");
DEFINE_int64(channels, 3, "image channels to decode to: 1 (grey) or 3 (RGB); alpha is composited onto black");
DEFINE_int64(image_size, 0, "resize the shorter side to this and centre-crop a square (0: keep; all images must match)");
DEFINE_validator(image_size, &non_negative);
DEFINE_string(dist, "moons", "toy distribution: moons, swissroll, 8gaussians, checkerboard, gaussian");

namespace unidiff::launcher {
namespace {

/// "1,2,2,2" -> {1, 2, 2, 2}; "" -> {}; anything else throws InputError naming the flag.
std::vector<int64_t> parse_int_list(const char* flag, const std::string& text) {
  std::vector<int64_t> out;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) {
    char* end = nullptr;
    const long long v = std::strtoll(item.c_str(), &end, 10);
    UD_CHECK_INPUT(!item.empty() && end != nullptr && *end == '\0' && v > 0, flag, " '", text,
                   "' is not a comma-separated list of positive integers");
    out.push_back(v);
  }
  return out;
}

/// "a,b,c" as doubles (empty: none); anything else throws InputError naming the flag.
std::vector<double> parse_double_list(const char* flag, const std::string& text) {
  std::vector<double> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    char* end = nullptr;
    const double v = std::strtod(item.c_str(), &end);
    UD_CHECK_INPUT(!item.empty() && end != nullptr && *end == '\0' && std::isfinite(v), flag, " '", text,
                   "' is not a comma-separated list of numbers");
    out.push_back(v);
  }
  return out;
}

}  // namespace

const std::vector<Command>& commands() {
  static const std::vector<Command> list = {
      {"train",
       "train a model (resumable runs arrive with checkpoints); run under mpirun for data parallel",
       {"data", "data_batch", "data_stream", "run_dir", "overwrite", "seed", "train_steps", "log_every",
        "resume", "save_every", "save_every_minutes", "keep_checkpoints", "allow_config_change",
        "train_stop_at", "method", "pd_teacher", "pd_start_steps", "pd_end_steps", "pd_round_steps", "eval_samples",
        "eval_every", "eval_reference", "eval_classifier",
        "threads", "precision", "channels_last", "cudnn_benchmark", "cuda_graph", "fused_group_norm", "dist_bucket_mb", "dist_overlap", "optim_zero", "model_arch", "model_hidden", "model_layers", "model_time_dim", "model_fourier",
        "model_channels", "model_mult", "model_res_blocks", "model_attn_res", "model_dropout",
        "model_depth", "model_heads", "model_patch",
        "objective", "sigma_min", "sigma_max", "sigma_data", "p_mean", "p_std", "ct_s0", "ct_s1",
        "huber_c", "tangent_warmup", "jvp", "reflow", "init_from",
        "diffusion_schedule", "rf_time", "class_conditional", "cfg_drop", "diffusion_steps", "diffusion_beta_start", "diffusion_beta_end",
        "prediction", "optim_lr", "optim_beta1", "optim_beta2", "optim_weight_decay",
        "optim_warmup", "optim_decay", "optim_grad_clip", "ema_decay"}},
      {"sample",
       "draw samples from a trained model into an HDF5 file (and a PNG beside it)",
       {"model", "checkpoint", "gmm_file", "schedule", "sampler", "steps", "spacing", "eta", "num",
        "sample_batch", "seed", "use_ema", "out", "plot_reference", "smld_inner", "smld_step",
        "instaflow_variant", "oracle_ode_steps", "label", "cfg_scale", "cm_times", "clip_x0", "threads",
        "precision", "channels_last", "fused_group_norm", "cudnn_benchmark"}},
      {"eval",
       "distances between a samples file and a reference dataset, printed as one JSON line",
       {"samples", "reference", "projections", "max_samples", "seed", "classifier", "threads"}},
      {"eval train-classifier",
       "train the evaluation classifier on labelled images (--data), report its accuracy on --reference",
       {"data", "reference", "out", "classifier_epochs", "classifier_batch", "seed", "threads"}},
      {"ckpt info", "print a checkpoint's manifest: step, world size, groups and tensors",
       {"checkpoint"}},
      {"data gmm", "draw exact samples of a Gaussian mixture file (/weights, /means, /stds)",
       {"gmm_file", "num", "seed", "out"}},
      {"data toy", "write a 2-D toy dataset (moons, swissroll, 8gaussians, checkerboard, gaussian)",
       {"dist", "num", "seed", "out", "shards"}},
      {"data fashion-mnist", "convert Debian's Fashion-MNIST to uint8 [N, 1, 28, 28] images + labels",
       {"split", "pad", "out", "shards", "fashion_mnist_dir"}},
      {"data images", "convert a folder of PNG/JPEG images (one sub-folder per class) to uint8 images + labels",
       {"dir", "channels", "image_size", "out", "shards"}},
  };
  return list;
}

experiments::TrainConfig make_train_config() {
  experiments::TrainConfig c;
  c.run_dir = FLAGS_run_dir;
  c.overwrite = FLAGS_overwrite;
  c.steps = FLAGS_train_steps;
  c.seed = static_cast<uint32_t>(FLAGS_seed);
  c.log_every = FLAGS_log_every;
  c.threads = static_cast<int>(FLAGS_threads);
  c.precision = FLAGS_precision;
  c.channels_last = FLAGS_channels_last;
  c.cudnn_benchmark = FLAGS_cudnn_benchmark;
  c.cuda_graph = FLAGS_cuda_graph;
  c.fused_group_norm = FLAGS_fused_group_norm;
  c.dist.bucket_mb = FLAGS_dist_bucket_mb;
  c.dist.overlap = FLAGS_dist_overlap;
  c.dist.zero = FLAGS_optim_zero;
  c.ckpt.resume = FLAGS_resume;
  c.ckpt.save_every = FLAGS_save_every;
  c.ckpt.save_every_minutes = FLAGS_save_every_minutes;
  c.ckpt.keep = FLAGS_keep_checkpoints;
  c.ckpt.allow_config_change = FLAGS_allow_config_change;
  c.ckpt.stop_at = FLAGS_train_stop_at;
  c.method = FLAGS_method;
  c.distill.teacher = FLAGS_pd_teacher;
  c.distill.start_steps = FLAGS_pd_start_steps;
  c.distill.end_steps = FLAGS_pd_end_steps;
  c.distill.round_steps = FLAGS_pd_round_steps;
  c.distill.eval_samples = FLAGS_eval_samples;
  c.data.path = FLAGS_data;
  c.data.global_batch = FLAGS_data_batch;
  c.data.stream = FLAGS_data_stream;
  c.network.arch = FLAGS_model_arch;
  c.network.hidden = FLAGS_model_hidden;
  c.network.layers = FLAGS_model_layers;
  c.network.time_dim = FLAGS_model_time_dim;
  c.network.fourier = FLAGS_model_fourier;
  c.network.channels = FLAGS_model_channels;
  c.network.channel_mult = parse_int_list("--model_mult", FLAGS_model_mult);
  c.network.res_blocks = FLAGS_model_res_blocks;
  c.network.attn_res = parse_int_list("--model_attn_res", FLAGS_model_attn_res);
  c.network.dropout = FLAGS_model_dropout;
  c.network.depth = FLAGS_model_depth;
  c.network.heads = FLAGS_model_heads;
  c.network.patch = FLAGS_model_patch;
  c.diffusion.schedule = FLAGS_diffusion_schedule;
  c.diffusion.rf_time = FLAGS_rf_time;
  c.diffusion.class_conditional = FLAGS_class_conditional;
  c.diffusion.cfg_drop = FLAGS_cfg_drop;
  c.diffusion.timesteps = FLAGS_diffusion_steps;
  c.diffusion.beta_start = FLAGS_diffusion_beta_start;
  c.diffusion.beta_end = FLAGS_diffusion_beta_end;
  c.diffusion.prediction = FLAGS_prediction;
  c.diffusion.objective = FLAGS_objective;
  c.diffusion.sigma_min = FLAGS_sigma_min;
  c.diffusion.sigma_max = FLAGS_sigma_max;
  c.diffusion.sigma_d = FLAGS_sigma_data;
  c.diffusion.p_mean = FLAGS_p_mean;
  c.diffusion.p_std = FLAGS_p_std;
  c.diffusion.ct_s0 = FLAGS_ct_s0;
  c.diffusion.ct_s1 = FLAGS_ct_s1;
  c.diffusion.huber_c = FLAGS_huber_c;
  c.diffusion.tangent_warmup = FLAGS_tangent_warmup;
  c.diffusion.jvp = FLAGS_jvp;
  c.diffusion.reflow = FLAGS_reflow;
  c.init_from = FLAGS_init_from;
  c.eval_every = FLAGS_eval_every;
  c.eval_reference = FLAGS_eval_reference;
  c.eval_classifier = FLAGS_eval_classifier;
  c.optim.lr = FLAGS_optim_lr;
  c.optim.beta1 = FLAGS_optim_beta1;
  c.optim.beta2 = FLAGS_optim_beta2;
  c.optim.weight_decay = FLAGS_optim_weight_decay;
  c.optim.warmup_steps = FLAGS_optim_warmup;
  c.optim.decay = FLAGS_optim_decay;
  c.optim.grad_clip = FLAGS_optim_grad_clip;
  c.optim.ema_decay = FLAGS_ema_decay;
  return c;
}

experiments::SampleConfig make_sample_config() {
  experiments::SampleConfig c;
  c.model = FLAGS_model;
  c.gmm_file = FLAGS_gmm_file;
  c.schedule = FLAGS_schedule;
  c.smld_inner = FLAGS_smld_inner;
  c.smld_step = FLAGS_smld_step;
  c.instaflow_variant = FLAGS_instaflow_variant;
  c.oracle_ode_steps = FLAGS_oracle_ode_steps;
  c.label = FLAGS_label;
  c.cfg_scale = FLAGS_cfg_scale;
  c.clip_x0 = FLAGS_clip_x0;
  c.checkpoint = FLAGS_checkpoint;
  c.sampler = FLAGS_sampler;
  c.steps = FLAGS_steps;
  c.spacing = FLAGS_spacing;
  c.cm_times = parse_double_list("--cm_times", FLAGS_cm_times);
  c.eta = FLAGS_eta;
  c.num = FLAGS_num;
  c.batch = FLAGS_sample_batch;
  c.seed = static_cast<uint32_t>(FLAGS_seed);
  c.use_ema = FLAGS_use_ema;
  c.out = FLAGS_out;
  c.plot_reference = FLAGS_plot_reference;
  c.threads = static_cast<int>(FLAGS_threads);
  c.precision = FLAGS_precision;
  c.channels_last = FLAGS_channels_last;
  c.fused_group_norm = FLAGS_fused_group_norm;
  c.cudnn_benchmark = FLAGS_cudnn_benchmark;
  return c;
}

experiments::EvalConfig make_eval_config() {
  experiments::EvalConfig c;
  c.samples = FLAGS_samples;
  c.reference = FLAGS_reference;
  c.projections = FLAGS_projections;
  c.max_samples = FLAGS_max_samples;
  c.seed = static_cast<uint32_t>(FLAGS_seed);
  c.classifier = FLAGS_classifier;
  c.threads = static_cast<int>(FLAGS_threads);
  return c;
}

experiments::ClassifierTrainConfig make_classifier_config() {
  experiments::ClassifierTrainConfig c;
  c.data = FLAGS_data;
  c.test = FLAGS_reference;
  c.out = FLAGS_out;
  c.epochs = FLAGS_classifier_epochs;
  c.batch = FLAGS_classifier_batch;
  c.seed = static_cast<uint32_t>(FLAGS_seed);
  c.threads = static_cast<int>(FLAGS_threads);
  return c;
}

FashionMnistConfig make_fashion_mnist_config() {
  return {FLAGS_fashion_mnist_dir, FLAGS_split, FLAGS_pad, FLAGS_shards, FLAGS_out};
}

std::string checkpoint_flag() { return FLAGS_checkpoint; }

ImageFolderConfig make_image_folder_config() {
  return {FLAGS_dir, FLAGS_channels, FLAGS_image_size, FLAGS_shards, FLAGS_out};
}

GmmDataConfig make_gmm_data_config() {
  return {FLAGS_gmm_file, FLAGS_num, static_cast<uint32_t>(FLAGS_seed), FLAGS_out};
}

ToyDataConfig make_toy_data_config() {
  ToyDataConfig c;
  c.dist = FLAGS_dist;
  c.num = FLAGS_num;
  c.seed = static_cast<uint32_t>(FLAGS_seed);
  c.out = FLAGS_out;
  c.shards = FLAGS_shards;
  return c;
}

}  // namespace unidiff::launcher
