// What the distillation methods share about their teacher: a DDPM model file (or run directory,
// EMA weights) checked against the data, its tables on the run's device, and its network's output
// read as x0 or eps at per-sample times, with classifier-free guidance for a conditional teacher.
#pragma once

#include <torch/types.h>

#include <memory>
#include <string>
#include <vector>

#include "experiments/model_io.h"
#include "experiments/run/model_group.h"
#include "objectives/parameterization.h"
#include "objectives/schedule.h"

namespace unidiff::experiments {

struct Teacher {
  LoadedModel model;                   ///< the network (EMA weights, on the device), its settings
  std::string path;                    ///< absolute, normalised (the resume guard records it)
  objectives::Prediction prediction;   ///< eps, x0 or v
  objectives::Schedule schedule;       ///< the DDPM tables, on the device
};

/// Loads the teacher for `method`: a DDPM model (eps, x0 or v prediction) on samples of
/// `data_shape`; InputError naming what does not fit. The network is moved to `device`.
Teacher load_teacher(const std::string& path, const std::vector<int64_t>& data_shape, torch::Device device,
                     const std::string& method);

/// Per-sample VP coefficients at code indices t (float [B], on the device), shaped against x.
struct VpPoint {
  torch::Tensor alpha, sigma;
};
VpPoint vp_point(const objectives::Schedule& schedule, const torch::Tensor& t, const torch::Tensor& like);

/// x_t = alpha x + sigma eps.
torch::Tensor diffuse(const VpPoint& p, const torch::Tensor& x, const torch::Tensor& eps);

/// (x0, eps) of a raw network output of `prediction` at x_t.
objectives::Denoised denoised(objectives::Prediction prediction, const torch::Tensor& out, const torch::Tensor& x_t,
                              const VpPoint& p);

/// The network's output at (x, t) for `labels` (undefined: unconditional), with classifier-free
/// guidance w for a conditional network (uncond + w (cond - uncond); w = 1: none).
torch::Tensor network_output(models::Network& net, const torch::Tensor& x, const torch::Tensor& t,
                             const torch::Tensor& labels, double cfg_scale = 1.0);
/// The same through a (frozen) group, whatever dtype it stores its weights in (float32 out).
torch::Tensor group_output(ModelGroup& group, const torch::Tensor& x, const torch::Tensor& t,
                           const torch::Tensor& labels, double cfg_scale = 1.0);

/// --teacher_dtype: fp32, or bf16 (the frozen teacher's weights in bfloat16: half its memory;
/// its calls run under bfloat16 autocast). InputError otherwise.
torch::ScalarType teacher_dtype(const std::string& name);

/// A new network of `config` on `device` whose first parameters are `from`'s: the same network, or
/// its guidance-conditioned version (whose guidance embedding, after the shared parameters, keeps
/// its zero start). How every student, generator, fake score and target starts from a teacher.
std::shared_ptr<models::Network> copy_of(const models::Network& from, const models::NetworkConfig& config,
                                         torch::Device device);

}  // namespace unidiff::experiments
