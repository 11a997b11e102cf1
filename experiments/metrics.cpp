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

double median_distance(const torch::Tensor& x) {
  const torch::Tensor a = flat64(x).slice(0, 0, 2000);
  const int64_t n = a.size(0);
  UD_CHECK_INPUT(n >= 2, "need at least 2 samples for a median distance");
  const torch::Tensor d = torch::cdist(a, a);
  const torch::Tensor upper = d.index({torch::triu(torch::ones({n, n}, torch::kBool), 1)});
  return upper.median().item<double>();
}

}  // namespace unidiff::experiments
