#include "experiments/metrics.h"

#include "core/error.h"
#include "core/rng.h"

namespace unidiff::experiments {
namespace {

torch::Tensor flat64(const torch::Tensor& x) {
  return x.reshape({x.size(0), -1}).to(torch::kCPU, torch::kFloat64);
}

/// Values of the sorted rows s [P, n] at quantile levels (k + 0.5) / L, k = 0..L-1: [P, L].
torch::Tensor quantiles(const torch::Tensor& sorted, int64_t levels) {
  const int64_t n = sorted.size(1);
  const torch::Tensor idx =
      ((torch::arange(levels, torch::kFloat64) + 0.5) * (static_cast<double>(n) / levels))
          .floor()
          .clamp_max(n - 1)
          .to(torch::kInt64);
  return sorted.index_select(1, idx);
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
  // Projections as rows [P, n]: each is sorted in contiguous memory (a column sort of [n, P]
  // strides through the whole matrix and took most of `unidiff eval`'s time).
  const torch::Tensor qa = quantiles(std::get<0>(torch::sort(dirs.matmul(a.t()), 1)), levels);
  const torch::Tensor qb = quantiles(std::get<0>(torch::sort(dirs.matmul(b.t()), 1)), levels);
  return std::sqrt((qa - qb).pow(2).mean().item<double>());
}

double mmd2_rbf(const torch::Tensor& x, const torch::Tensor& y, double bandwidth) {
  const torch::Tensor a = flat64(x), b = flat64(y);
  const int64_t n = a.size(0), m = b.size(0);
  UD_CHECK_INPUT(n >= 2 && m >= 2, "MMD needs at least 2 samples in each set");
  const double g = 1.0 / (2 * bandwidth * bandwidth);
  // Sum of k over all pairs: |p|^2 + |q|^2 - 2 p.q in one [n, m] buffer, the kernel in place.
  auto ksum = [&](const torch::Tensor& p, const torch::Tensor& q) {
    torch::Tensor k = torch::addmm(p.square().sum(1, true), p, q.t(), /*beta=*/1, /*alpha=*/-2);
    k.add_(q.square().sum(1).unsqueeze(0)).clamp_min_(0).mul_(-g).exp_();
    return k.sum().item<double>();
  };
  const double kxx = (ksum(a, a) - static_cast<double>(n)) / (n * (n - 1.0));
  const double kyy = (ksum(b, b) - static_cast<double>(m)) / (m * (m - 1.0));
  const double kxy = ksum(a, b) / (static_cast<double>(n) * static_cast<double>(m));
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
  return torch::pdist(a).median().item<double>();  // the n (n - 1) / 2 distances of distinct pairs
}

}  // namespace unidiff::experiments
