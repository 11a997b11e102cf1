// objectives/distill/dmd.h.
#include "objectives/distill/dmd.h"

#include "core/error.h"
#include "objectives/sampling/ddpm.h"
#include "objectives/schedule.h"

namespace unidiff::objectives {
torch::Tensor dmd_weight(const torch::Tensor& x, const torch::Tensor& x0_real) {
  torch::NoGradGuard no_grad;
  return 1.0 / (x - x0_real).abs().reshape({x.size(0), -1}).mean(1).clamp_min(1e-12);
}

torch::Tensor matching_direction(const torch::Tensor& x0_fake, const torch::Tensor& x0_real, const torch::Tensor& c) {
  torch::NoGradGuard no_grad;
  return per_sample(c, x0_fake) * (x0_fake - x0_real);
}

torch::Tensor direction_loss(const torch::Tensor& x, const torch::Tensor& g) {
  return 0.5 * (x - (x - g).detach()).pow(2).mean();
}

torch::Tensor gan_discriminator_loss(const torch::Tensor& real_logits, const torch::Tensor& fake_logits) {
  return torch::softplus(-real_logits).mean() + torch::softplus(fake_logits).mean();
}

torch::Tensor gan_generator_loss(const torch::Tensor& fake_logits) { return torch::softplus(-fake_logits).mean(); }

torch::Tensor hinge_discriminator_loss(const torch::Tensor& real_logits, const torch::Tensor& fake_logits) {
  return torch::relu(1 - real_logits).mean() + torch::relu(1 + fake_logits).mean();
}

torch::Tensor hinge_generator_loss(const torch::Tensor& fake_logits) { return -fake_logits.mean(); }

std::vector<int64_t> generator_times(int64_t num_steps, int64_t n) {
  return timestep_subsequence(num_steps, n, Spacing::kTrailing);
}

GeneratorInput backward_simulation(const GeneratorFn& generator, const Schedule& schedule, const torch::Tensor& x_T,
                                   const std::vector<int64_t>& times, const torch::Tensor& k, const NoiseFn& noise) {
  torch::NoGradGuard no_grad;
  UD_ASSERT(!times.empty(), "a generator has at least one step");
  const int64_t b = x_T.size(0);
  const auto f32 = torch::dtype(torch::kFloat32).device(x_T.device());
  const torch::Tensor kk = k.to(x_T.device(), torch::kInt64);
  torch::Tensor state = x_T, picked = x_T.clone();
  torch::Tensor t = torch::full({b}, static_cast<double>(times[0]), f32);
  const int64_t last = kk.numel() > 0 ? kk.max().item<int64_t>() : 0;
  UD_ASSERT(last < static_cast<int64_t>(times.size()), "generator step ", last, " of ", times.size());
  for (int64_t i = 0; i < last; ++i) {
    const double ti = static_cast<double>(times[static_cast<size_t>(i)]);
    const double tn = static_cast<double>(times[static_cast<size_t>(i + 1)]);
    const torch::Tensor x0 = generator(state, torch::full({b}, ti, f32));
    state = schedule.alpha(tn) * x0 + schedule.sigma(tn) * noise(i).to(x0.device(), x0.scalar_type());
    const torch::Tensor here = (kk == i + 1);
    picked = torch::where(per_sample(here, picked).to(torch::kBool), state, picked);
    t = torch::where(here, torch::full_like(t, tn), t);
  }
  return {picked, t};
}

}  // namespace unidiff::objectives
