#include "models/gmm.h"

#include <cmath>
#include <numbers>

#include "core/error.h"
#include "core/h5.h"
#include "core/rng.h"

namespace unidiff::models {

GaussianMixture::GaussianMixture(torch::Tensor w, torch::Tensor m, torch::Tensor s)
    : weights(w.to(torch::kCPU, torch::kFloat64)),
      means(m.to(torch::kCPU, torch::kFloat64)),
      stds(s.to(torch::kCPU, torch::kFloat64)) {
  UD_CHECK_INPUT(weights.dim() == 1 && weights.size(0) > 0, "mixture /weights must be [K], K > 0");
  UD_CHECK_INPUT(means.dim() == 2 && means.size(0) == weights.size(0),
                 "mixture /means must be [K, D] with K = ", weights.size(0));
  UD_CHECK_INPUT(stds.sizes() == means.sizes(), "mixture /stds must be [K, D] like /means");
  UD_CHECK_INPUT(torch::isfinite(means).all().item<bool>() && torch::isfinite(stds).all().item<bool>(),
                 "mixture means and stds must be finite");
  UD_CHECK_INPUT((weights >= 0).all().item<bool>() && weights.sum().item<double>() > 0,
                 "mixture weights must be non-negative with a positive sum");
  UD_CHECK_INPUT((stds > 0).all().item<bool>(), "mixture stds must be positive");
  // Beyond these the oracle's densities (exp of -(x - m)^2 / 2 s^2, s^-D) over- or underflow in
  // float64 and every sampler returns NaN.
  UD_CHECK_INPUT(means.abs().max().item<double>() <= 1e6 && stds.max().item<double>() <= 1e6 &&
                     stds.min().item<double>() >= 1e-6,
                 "mixture means must lie within +-1e6 and stds within [1e-6, 1e6], got |means| up to ",
                 means.abs().max().item<double>(), " and stds in [", stds.min().item<double>(), ", ",
                 stds.max().item<double>(), "]");
  weights = weights / weights.sum();
}

GaussianMixture GaussianMixture::load(const std::filesystem::path& path) {
  const h5::File f = h5::File::open_read(path);
  for (const char* name : {"/weights", "/means", "/stds"}) {
    UD_CHECK_INPUT(f.has(name), "mixture file '", path.string(), "' has no ", name,
                   " (expected /weights [K], /means [K, D], /stds [K, D])");
  }
  try {
    return GaussianMixture(h5::read_tensor(f, "/weights"), h5::read_tensor(f, "/means"),
                           h5::read_tensor(f, "/stds"));
  } catch (const InputError& e) {
    const std::string what = e.what();
    if (what.find(path.string()) != std::string::npos) throw;
    UD_FAIL_INPUT("mixture file '", path.string(), "': ", what);
  }
}

void GaussianMixture::save(const std::filesystem::path& path) const {
  h5::write_atomically(path, [&](h5::File& f) {
    h5::write_tensor(f, "/weights", weights);
    h5::write_tensor(f, "/means", means);
    h5::write_tensor(f, "/stds", stds);
  });
}

torch::Tensor GaussianMixture::sample(int64_t n, uint32_t seed) const {
  UD_CHECK_INPUT(n > 0, "the number of samples must be positive, got ", n);
  const torch::Tensor idx = rng::arange_indices(0, n);
  const torch::Tensor u = rng::uniform({seed, rng::Purpose::kDataGen}, 0, idx, {1}).to(torch::kFloat64);
  const torch::Tensor z = rng::normal({seed, rng::Purpose::kDataGen}, 1, idx, {dim()}).to(torch::kFloat64);
  // Component by inverting the cumulative weights.
  const torch::Tensor cdf = torch::cumsum(weights, 0);
  const torch::Tensor k = torch::searchsorted(cdf, u.squeeze(1)).clamp_max(components() - 1);
  return (means.index_select(0, k) + stds.index_select(0, k) * z).to(torch::kFloat32);
}

namespace {
torch::Tensor column(const torch::Tensor& c, int64_t b) {
  const torch::Tensor t = c.to(torch::kCPU, torch::kFloat64);
  return (t.dim() == 0 ? t.expand({b}) : t.reshape({b})).view({b, 1, 1});
}
}  // namespace

torch::Tensor GaussianMixture::posterior_mean(const torch::Tensor& x_t, const torch::Tensor& alpha,
                                              const torch::Tensor& sigma) const {
  UD_ASSERT(x_t.dim() == 2 && x_t.size(1) == dim(), "posterior_mean takes [B, D] with D = ", dim());
  const int64_t b = x_t.size(0);
  const torch::Tensor x = x_t.to(torch::kCPU, torch::kFloat64).unsqueeze(1);  // [B, 1, D]
  const torch::Tensor a = column(alpha, b), s = column(sigma, b);             // [B, 1, 1]
  const torch::Tensor m = means.unsqueeze(0), sd2 = stds.pow(2).unsqueeze(0);   // [1, K, D]
  const torch::Tensor var = a.pow(2) * sd2 + s.pow(2);                          // [B, K, D]
  const torch::Tensor diff = x - a * m;
  const torch::Tensor logp = torch::log(weights).unsqueeze(0) -
                             0.5 * (torch::log(2 * std::numbers::pi * var) + diff.pow(2) / var).sum(2);
  const torch::Tensor r = torch::softmax(logp, 1).unsqueeze(2);                 // [B, K, 1]
  const torch::Tensor cond = m + a * sd2 / var * diff;                          // E[x0 | x_t, k]
  return (r * cond).sum(1).to(x_t.device(), x_t.scalar_type());
}

torch::Tensor GaussianMixture::ode_map(const torch::Tensor& x, double alpha, double sigma,
                                       double alpha_to, double sigma_to) const {
  UD_ASSERT(components() == 1, "the closed-form ODE map needs a single Gaussian");
  const torch::Tensor m = means[0], s2 = stds[0].pow(2);
  const torch::Tensor xs = x.to(torch::kCPU, torch::kFloat64);
  const torch::Tensor ratio = ((alpha_to * alpha_to) * s2 + sigma_to * sigma_to).sqrt() /
                              ((alpha * alpha) * s2 + sigma * sigma).sqrt();
  return (alpha_to * m + (xs - alpha * m) * ratio).to(x.device(), x.scalar_type());
}

}  // namespace unidiff::models
