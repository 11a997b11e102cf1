// Progressive distillation (Salimans & Ho 2022; FORMULAS.md section 5) on a variance-preserving
// schedule. Time convention: a sampler of N steps walks the grid s_k = k / N, k = N .. 0, of
// "progress" s in [0, 1]; s > 0 sits at the schedule's real time t = s (T - 1) (DDPM code index,
// log-abar interpolated between integers) and s = 0 is clean data (alpha = 1, sigma = 0). The
// network takes t as its time input.
//
// The student's one deterministic DDIM step s -> s - 1/N must match the teacher's two steps
// s -> s - 1/(2N) -> s - 1/N. With z the noisy input and z'' the teacher's result at s'', the
// target is x_tilde = (z'' - (sigma''/sigma) z) / (alpha'' - (sigma''/sigma) alpha), the x0 that
// makes one DDIM step land on z''; the loss is w || x_tilde - x0_hat_student(z) ||^2 with the
// truncated-SNR weight w = max(alpha^2 / sigma^2, 1).
#pragma once

#include <torch/types.h>

#include <functional>

#include "objectives/parameterization.h"
#include "objectives/schedule.h"

namespace unidiff::objectives {

/// A network's prediction turned into x0 (its parameterisation handled by the caller).
using X0Fn = std::function<torch::Tensor(const torch::Tensor& z, const torch::Tensor& t)>;

/// Schedule coefficients at progress s (per sample, float64 [B]) and the network time t, on s's
/// device.
struct PdPoint {
  torch::Tensor alpha, sigma;  ///< float64 [B]
  torch::Tensor t;             ///< float32 [B], the network's time input (T - 1) s
};
PdPoint pd_point(const Schedule& schedule, const torch::Tensor& s);

/// One deterministic DDIM step from z at `from` to `to` given the predicted x0:
/// z_to = alpha_to x0 + sigma_to (z - alpha_from x0) / sigma_from.
torch::Tensor pd_ddim_step(const torch::Tensor& z, const torch::Tensor& x0, const PdPoint& from,
                           const PdPoint& to);

struct PdLoss {
  torch::Tensor loss;      ///< scalar, differentiable through the student
  torch::Tensor x_target;  ///< x_tilde [B, ...] (detached)
};

/// The distillation loss at progress s (float64 [B], multiples of 1/N in (0, 1]) for data x0 and
/// noise eps: z = alpha x0 + sigma eps, the teacher's two half steps, the target, and the
/// truncated-SNR-weighted error of the student's x0. Computed on x0's device.
PdLoss progressive_distillation_loss(const X0Fn& teacher, const X0Fn& student,
                                     const Schedule& schedule, const torch::Tensor& x0,
                                     const torch::Tensor& eps, const torch::Tensor& s, int64_t n);

/// x0 of classifier-free guidance (FORMULAS (23)) at each sample's w (float [B]):
/// uncond + w (cond - uncond), combined in x0 (affine in the network's output at fixed z and t).
X0Fn guided_x0(X0Fn cond, X0Fn uncond, torch::Tensor w);

/// Guided distillation's first stage (Meng et al. 2023, handbook 3.2.6): at progress s (float64
/// [B], in (0, 1]) the student's x0 (a guidance-conditioned network at each sample's w, the
/// caller's X0Fn) matches the guided teacher's x0 at the same z = alpha x0 + sigma eps, with the
/// rounds' truncated-SNR weight. The halving rounds that follow are progressive_distillation_loss
/// with the guided teacher's X0Fn: two guided DDIM steps as the target.
PdLoss guidance_distillation_loss(const X0Fn& guided_teacher, const X0Fn& student, const Schedule& schedule,
                                  const torch::Tensor& x0, const torch::Tensor& eps, const torch::Tensor& s);

/// The N-step grid's network times (T - 1) k / N, k = N .. 1 (the last step goes to clean data).
std::vector<double> pd_times(const Schedule& schedule, int64_t n);

/// Deterministic DDIM (objectives/sampling/ddim.h) from x_T over the N-step grid (the way a
/// distilled student of N steps, and a teacher compared at N steps, are sampled).
torch::Tensor pd_sample(const X0Fn& model, const Schedule& schedule, const torch::Tensor& x_T,
                        int64_t n);

}  // namespace unidiff::objectives
