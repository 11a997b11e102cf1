// Consistency distillation on a DDPM teacher's tables (FORMULAS.md (46), handbook 3.2.1; LCM, 2.6.5).
//
// Times are the teacher's code indices. The grid is the N trailing timesteps of T,
// g_0 = T - 1 > g_1 > ... > g_{N-1} (timestep_subsequence(T, N, trailing): g_i = T - 1 - i T / N
// for N dividing T), followed by g_N = -1, clean data. The student's consistency function is LCM's
// (FORMULAS (24)): f(x, t) = c_skip(t) x + c_out(t) x0_hat(x, t) with lcm_boundary's coefficients,
// x0_hat from the student network's own prediction type, and f(x, -1) = x exactly.
//
// A training pair (generalised k-step CD): a grid index i in [0, N - k], data x0 and noise eps,
// x_{g_i} = alpha x0 + sigma eps; the teacher's k deterministic DDIM steps g_i -> g_{i+1} -> ...
// -> g_{i+k} give x_hat; the loss is d(f_theta(x_{g_i}, g_i), stopgrad f_theta-(x_hat, g_{i+k})),
// theta- the target network (an EMA of the student, or the student itself), d the squared L2 norm
// (mean over the elements) or the pseudo-Huber distance sqrt(||a - b||^2 + c^2) - c (iCT, LCM).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "objectives/schedule.h"

namespace unidiff::objectives {

/// g_0 .. g_{N-1} (trailing code indices, decreasing) and g_N = -1.
std::vector<int64_t> cd_grid(int64_t num_steps, int64_t intervals);

/// f(x, t) = c_skip(t) x + c_out(t) x0_hat per sample (t float [B] code indices; t < 0: x itself).
torch::Tensor lcm_consistency(const torch::Tensor& x, const torch::Tensor& x0_hat, const torch::Tensor& t);

/// eps at (x, t) of a network (its prediction converted), t float [B] code indices >= 0.
using EpsAt = std::function<torch::Tensor(const torch::Tensor& x, const torch::Tensor& t)>;

/// The teacher's k deterministic DDIM steps from x at grid index i (int64 [B], i + k <= N) to
/// grid index i + k (per sample; the grid of cd_grid as a float tensor on x's device).
torch::Tensor cd_teacher_solve(const EpsAt& teacher, const Schedule& schedule, const torch::Tensor& grid,
                               torch::Tensor x, const torch::Tensor& i, int64_t k);

/// d(a, b) per sample [B]: "l2" the mean squared difference over the elements, "huber" the pseudo-
/// Huber distance with constant c (over the flattened sample).
torch::Tensor cd_distance(const torch::Tensor& a, const torch::Tensor& b, const std::string& kind, double c);

}  // namespace unidiff::objectives
