#include "experiments/metrics.h"

#include "core/error.h"
#include "core/rng.h"

namespace unidiff::experiments {
namespace {

torch::Tensor flat64(const torch::Tensor& x) {
  return x.reshape({x.size(0), -1}).to(torch::kCPU, torch::kFloat64);
}

/// Values of the sorted columns s [n, P] at quantile levels (k + 0.5) / L, k = 0..L-1: [L, P].
torch::Tensor quantiles(const torch::Tensor& sorted, int64_t levels) {
  const int64_t n = sorted.size(0);
  const torch::Tensor idx =
      ((torch::arange(levels, torch::kFloat64) + 0.5) * (static_cast<double>(n) / levels))
          .floor()
          .clamp_max(n - 1)
          .to(torch::kInt64);
  return sorted.index_select(0, idx);
}

}  // namespace

double sliced_wasserstein(const torch::Tensor& x, const torch::Tensor& y, int64_t projections,
                          uint32_t seed) {
  const torch::Tensor a = flat64(x), b = flat64(y);
  UD_CHECK_INPUT(a.size(1) == b.size(1), "sample sets of different dimension: ", a.size(1),
                 " and ", b.size(1));
  UD_CHECK_INPUT(a.size(0) > 0 && b.size(0) > 0, "empty sample set");
  torch::Tensor dirs = rng::normal({seed, rng::Purpose::kEval}, 0,
                                   rng::arange_indices(0, projections), {a.size(1)})
                           .to(torch::kFloat64);
  dirs = dirs / dirs.norm(2, 1, true);
  const int64_t levels = std::max(a.size(0), b.size(0));
  const torch::Tensor qa = quantiles(std::get<0>(torch::sort(a.matmul(dirs.t()), 0)), levels);
  const torch::Tensor qb = quantiles(std::get<0>(torch::sort(b.matmul(dirs.t()), 0)), levels);
  return std::sqrt((qa - qb).pow(2).mean().item<double>());
}

double mmd2_rbf(const torch::Tensor& x, const torch::Tensor& y, double bandwidth) {
  const torch::Tensor a = flat64(x), b = flat64(y);
  const int64_t n = a.size(0), m = b.size(0);
  UD_CHECK_INPUT(n >= 2 && m >= 2, "MMD needs at least 2 samples in each set");
  const double g = 1.0 / (2 * bandwidth * bandwidth);
  auto k = [&](const torch::Tensor& p, const torch::Tensor& q) {
    return torch::exp(-g * torch::cdist(p, q).pow(2));
  };
  const double kxx = (k(a, a).sum().item<double>() - static_cast<double>(n)) / (n * (n - 1.0));
  const double kyy = (k(b, b).sum().item<double>() - static_cast<double>(m)) / (m * (m - 1.0));
  const double kxy = k(a, b).mean().item<double>();
  return kxx + kyy - 2 * kxy;
}

namespace {

/// Symmetric PSD square root by eigen-decomposition (negative round-off eigenvalues clamped).
torch::Tensor sqrt_psd(const torch::Tensor& s) {
  const auto [w, v] = torch::linalg_eigh(s);
  return v.matmul(torch::diag(w.clamp_min(0).sqrt())).matmul(v.t());
}

}  // namespace

double frechet_distance(const torch::Tensor& mu1_in, const torch::Tensor& s1_in, const torch::Tensor& mu2_in,
                        const torch::Tensor& s2_in) {
  const torch::Tensor mu1 = mu1_in.to(torch::kCPU, torch::kFloat64), mu2 = mu2_in.to(torch::kCPU, torch::kFloat64);
  const torch::Tensor s1 = s1_in.to(torch::kCPU, torch::kFloat64), s2 = s2_in.to(torch::kCPU, torch::kFloat64);
  UD_CHECK_INPUT(mu1.sizes() == mu2.sizes() && s1.sizes() == s2.sizes() && s1.dim() == 2 &&
                     s1.size(0) == mu1.size(0) && s1.size(1) == mu1.size(0),
                 "Frechet distance of Gaussians of different dimensions");
  const torch::Tensor r1 = sqrt_psd(s1);
  torch::Tensor m = r1.matmul(s2).matmul(r1);
  m = (m + m.t()) / 2;
  const double tr_root = torch::linalg_eigvalsh(m).clamp_min(0).sqrt().sum().item<double>();
  return (mu1 - mu2).pow(2).sum().item<double>() + s1.trace().item<double>() + s2.trace().item<double>() -
         2 * tr_root;
}

double frechet_distance(const torch::Tensor& x, const torch::Tensor& y) {
  const torch::Tensor a = flat64(x), b = flat64(y);
  UD_CHECK_INPUT(a.size(0) >= 2 && b.size(0) >= 2 && a.size(1) == b.size(1),
                 "Frechet distance needs two feature sets of the same width with at least 2 rows each");
  auto cov = [](const torch::Tensor& f) {
    const torch::Tensor c = f - f.mean(0, true);
    return c.t().matmul(c) / static_cast<double>(f.size(0) - 1);
  };
  return frechet_distance(a.mean(0), cov(a), b.mean(0), cov(b));
}

double median_distance(const torch::Tensor& x) {
  const torch::Tensor a = flat64(x).slice(0, 0, 2000);
  const int64_t n = a.size(0);
  UD_CHECK_INPUT(n >= 2, "need at least 2 samples for a median distance");
  const torch::Tensor d = torch::cdist(a, a);
  const torch::Tensor upper = d.index({torch::triu(torch::ones({n, n}, torch::kBool), 1)});
  return upper.median().item<double>();
}

}  // namespace unidiff::experiments
