// objectives/reward/policy.h.
#include "objectives/reward/policy.h"

#include <cmath>
#include <numbers>

#include "core/error.h"

namespace unidiff::objectives {
torch::Tensor gaussian_log_prob(const torch::Tensor& x_next, const torch::Tensor& mean, const torch::Tensor& std) {
  const int64_t b = x_next.size(0);
  const double d = static_cast<double>(x_next.numel() / std::max<int64_t>(1, b));
  const torch::Tensor s = std.to(torch::kFloat64);
  const torch::Tensor sq = (x_next - mean).to(torch::kFloat64).reshape({b, -1}).pow(2).sum(1);
  return -sq / (2 * s * s) - d * s.log() - 0.5 * d * std::log(2 * std::numbers::pi);
}

torch::Tensor ppo_clip_loss(const torch::Tensor& logp, const torch::Tensor& logp_old, const torch::Tensor& advantage,
                            double clip) {
  const torch::Tensor rho = (logp - logp_old).exp();
  const torch::Tensor a = advantage.to(rho.scalar_type());
  return torch::max(-a * rho, -a * rho.clamp(1 - clip, 1 + clip)).mean();
}

torch::Tensor approx_kl(const torch::Tensor& logp, const torch::Tensor& logp_old) {
  return 0.5 * (logp - logp_old).pow(2).mean();
}

torch::Tensor clip_fraction(const torch::Tensor& logp, const torch::Tensor& logp_old, double clip) {
  return ((logp - logp_old).exp() - 1).abs().gt(clip).to(torch::kFloat64).mean();
}

torch::Tensor rwr_weights(const torch::Tensor& reward, double beta, double max_weight) {
  UD_ASSERT(beta > 0, "the DRWR temperature must be positive");
  return (reward / beta).exp().clamp_max(max_weight);
}

namespace {

std::pair<double, double> mean_std(const std::vector<double>& v) {
  if (v.empty()) return {0.0, 1.0};
  double m = 0;
  for (double x : v) m += x;
  m /= static_cast<double>(v.size());
  double var = 0;
  for (double x : v) var += (x - m) * (x - m);
  return {m, std::sqrt(var / static_cast<double>(v.size()))};
}

}  // namespace

torch::Tensor RewardStats::advantages(const torch::Tensor& rewards, const torch::Tensor& labels) const {
  const torch::Tensor r = rewards.to(torch::kCPU, torch::kFloat64).contiguous();
  const int64_t n = r.numel();
  std::vector<double> finite;
  for (int64_t i = 0; i < n; ++i) {
    if (std::isfinite(r[i].item<double>())) finite.push_back(r[i].item<double>());
  }
  const auto [batch_mean, batch_std] = mean_std(finite);
  torch::Tensor a = torch::zeros({n}, torch::kFloat64);
  const torch::Tensor l = labels.defined() ? labels.to(torch::kCPU, torch::kInt64) : torch::Tensor();
  for (int64_t i = 0; i < n; ++i) {
    const double ri = r[i].item<double>();
    if (!std::isfinite(ri)) continue;
    double m = batch_mean, s = batch_std;
    if (l.defined()) {
      const auto it = by_class_.find(l[i].item<int64_t>());
      if (it != by_class_.end() && static_cast<int64_t>(it->second.size()) >= min_count_) {
        std::tie(m, s) = mean_std(std::vector<double>(it->second.begin(), it->second.end()));
      }
    }
    a[i] = (ri - m) / (s + 1e-6);
  }
  return a;
}

torch::Tensor RewardStats::update(const torch::Tensor& rewards, const torch::Tensor& labels) {
  if (labels.defined()) {
    const torch::Tensor r = rewards.to(torch::kCPU, torch::kFloat64);
    const torch::Tensor l = labels.to(torch::kCPU, torch::kInt64);
    for (int64_t i = 0; i < r.numel(); ++i) {
      const double ri = r[i].item<double>();
      if (!std::isfinite(ri)) continue;
      auto& q = by_class_[l[i].item<int64_t>()];
      q.push_back(ri);
      while (static_cast<int64_t>(q.size()) > buffer_) q.pop_front();
    }
  }
  return advantages(rewards, labels);
}

std::pair<std::vector<int64_t>, std::vector<double>> RewardStats::state() const {
  std::pair<std::vector<int64_t>, std::vector<double>> s;
  for (const auto& [k, q] : by_class_) {
    for (double v : q) {
      s.first.push_back(k);
      s.second.push_back(v);
    }
  }
  return s;
}

void RewardStats::set_state(const std::vector<int64_t>& classes, const std::vector<double>& rewards) {
  UD_ASSERT(classes.size() == rewards.size(), "reward statistics: ", classes.size(), " classes, ", rewards.size(),
            " rewards");
  by_class_.clear();
  for (size_t i = 0; i < classes.size(); ++i) by_class_[classes[i]].push_back(rewards[i]);
}

}  // namespace unidiff::objectives
