// experiments/distill/teacher.h.
#include "experiments/distill/teacher.h"

#include <filesystem>

#include "core/error.h"
#include "experiments/pretrain/objectives.h"
#include "objectives/ddpm_schedule.h"
#include "objectives/sampling/ode.h"

namespace unidiff::experiments {

namespace o = objectives;

Teacher load_teacher(const std::string& path, const std::vector<int64_t>& data_shape, torch::Device device,
                     const std::string& method) {
  UD_CHECK_INPUT(!path.empty(), "--teacher is required (a model file or run directory)");
  Teacher t;
  t.model = load_model(path, /*use_ema=*/true);
  t.path = std::filesystem::absolute(path).lexically_normal().string();
  const DiffusionConfig d = resolve_diffusion(t.model.diffusion);
  UD_CHECK_INPUT(d.objective == "ddpm", "--method=", method, " distils a DDPM teacher; '", path, "' is a ",
                 d.objective, " model");
  t.prediction = o::parse_prediction(d.prediction);
  UD_CHECK_INPUT(t.prediction == o::Prediction::kEps || t.prediction == o::Prediction::kX0 ||
                     t.prediction == o::Prediction::kV,
                 "the teacher predicts ", d.prediction, " (valid: eps, x0, v)");
  UD_CHECK_INPUT(t.model.network.data_shape == data_shape, "the teacher '", path, "' models samples of shape ",
                 torch::IntArrayRef(t.model.network.data_shape), " but --data has ", torch::IntArrayRef(data_shape));
  t.schedule = o::Schedule::from_ddpm(
      o::DdpmSchedule::make(o::parse_beta_schedule(d.schedule), d.timesteps, d.beta_start, d.beta_end).to(device));
  t.model.module->to(device);
  return t;
}

VpPoint vp_point(const o::Schedule& schedule, const torch::Tensor& t, const torch::Tensor& like) {
  const o::Coeffs c = schedule.at(t.to(torch::kFloat64));
  std::vector<int64_t> shape(static_cast<size_t>(like.dim()), 1);
  shape[0] = like.size(0);
  return {c.alpha.to(like.scalar_type()).view(shape), c.sigma.to(like.scalar_type()).view(shape)};
}

torch::Tensor diffuse(const VpPoint& p, const torch::Tensor& x, const torch::Tensor& eps) {
  return p.alpha * x + p.sigma * eps;
}

o::Denoised denoised(o::Prediction prediction, const torch::Tensor& out, const torch::Tensor& x_t, const VpPoint& p) {
  switch (prediction) {
    case o::Prediction::kEps: return {(x_t - p.sigma * out) / p.alpha, out};
    case o::Prediction::kX0: return {out, (x_t - p.alpha * out) / p.sigma};
    case o::Prediction::kV:  // v = alpha eps - sigma x0 with alpha^2 + sigma^2 = 1
      return {p.alpha * x_t - p.sigma * out, p.sigma * x_t + p.alpha * out};
    default: UD_ASSERT(false, "distillation teachers predict eps, x0 or v");
  }
  return {};
}

torch::Tensor network_output(models::Network& net, const torch::Tensor& x, const torch::Tensor& t,
                             const torch::Tensor& labels, double cfg_scale) {
  if (!labels.defined() || net.num_classes() == 0) return net.forward(x, t);
  const torch::Tensor cond = net.forward_cond(x, t, labels);
  if (cfg_scale == 1.0) return cond;
  return o::cfg_combine(cond, net.forward_cond(x, t, torch::full_like(labels, net.num_classes())), cfg_scale);
}

torch::Tensor group_output(ModelGroup& group, const torch::Tensor& x, const torch::Tensor& t,
                           const torch::Tensor& labels, double cfg_scale) {
  const int64_t k = group.net().num_classes();
  if (!labels.defined() || k == 0) return group.forward(x, t);
  const torch::Tensor cond = group.forward(x, t, labels);
  if (cfg_scale == 1.0) return cond;
  return o::cfg_combine(cond, group.forward(x, t, torch::full_like(labels, k)), cfg_scale);
}

std::shared_ptr<models::Network> copy_of(const models::Network& from, const models::NetworkConfig& config,
                                         torch::Device device) {
  auto n = models::make_network(config);
  n->to(device);
  torch::NoGradGuard no_grad;
  const auto a = from.parameters(), b = n->parameters();
  UD_ASSERT(b.size() >= a.size(), "the copy has fewer parameters than its source");
  for (size_t i = 0; i < a.size(); ++i) b[i].copy_(a[i]);
  return n;
}

torch::ScalarType teacher_dtype(const std::string& name) {
  if (name == "fp32") return torch::kFloat32;
  UD_CHECK_INPUT(name == "bf16", "--teacher_dtype must be fp32 or bf16, got '", name, "'");
  return torch::kBFloat16;
}

}  // namespace unidiff::experiments
