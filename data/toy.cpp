// Toy 2-D distributions (data/toy.h), drawn from the keyed generator. Scales follow common usage
// (scikit-learn's moons and swiss roll, the 8-Gaussians and checkerboard of FFJORD), shifted so
// each set is roughly centred with unit-order spread.
#include "data/toy.h"

#include <functional>
#include <map>
#include <numbers>

#include "core/error.h"
#include "core/rng.h"

namespace unidiff::data {
namespace {

using ToyFn = std::function<torch::Tensor(const torch::Tensor& u, const torch::Tensor& z)>;

// Each generator gets per-sample uniforms u [n, 4] and normals z [n, 2].
const std::map<std::string, ToyFn>& registry() {
  static const std::map<std::string, ToyFn> r = {
      {"moons",
       [](const torch::Tensor& u, const torch::Tensor& z) {
         const torch::Tensor theta = u.select(1, 0) * std::numbers::pi;
         const torch::Tensor upper = u.select(1, 1) < 0.5;
         const torch::Tensor x = torch::where(upper, torch::cos(theta), 1 - torch::cos(theta));
         const torch::Tensor y = torch::where(upper, torch::sin(theta), 0.5 - torch::sin(theta));
         return (torch::stack({x - 0.5, y - 0.25}, 1) + 0.05 * z) * 2.0;
       }},
      {"swissroll",
       [](const torch::Tensor& u, const torch::Tensor& z) {
         const torch::Tensor t = 1.5 * std::numbers::pi * (1 + 2 * u.select(1, 0));
         return (torch::stack({t * torch::cos(t), t * torch::sin(t)}, 1) + 0.5 * z) / 5.0;
       }},
      {"8gaussians",
       [](const torch::Tensor& u, const torch::Tensor& z) {
         const torch::Tensor k = torch::floor(u.select(1, 0) * 8).clamp_max(7);
         const torch::Tensor angle = k * (std::numbers::pi / 4);
         return torch::stack({torch::cos(angle), torch::sin(angle)}, 1) * 2.0 + 0.2 * z;
       }},
      {"gaussian",  // the standard normal: the reference point "no learning" is judged against
       [](const torch::Tensor&, const torch::Tensor& z) { return z; }},
      {"checkerboard",
       [](const torch::Tensor& u, const torch::Tensor&) {
         const torch::Tensor x1 = u.select(1, 0) * 4 - 2;
         const torch::Tensor x2_ = u.select(1, 1) - torch::floor(u.select(1, 2) * 2) * 2;
         const torch::Tensor x2 = x2_ + torch::remainder(torch::floor(x1), 2);
         return torch::stack({x1, x2}, 1);
       }},
  };
  return r;
}

}  // namespace

const std::vector<std::string>& toy_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const auto& [k, v] : registry()) n.push_back(k);
    return n;
  }();
  return names;
}

torch::Tensor make_toy(const std::string& name, int64_t n, uint32_t seed) {
  const auto it = registry().find(name);
  if (it == registry().end()) {
    std::string known;
    for (const auto& k : toy_names()) known += (known.empty() ? "" : ", ") + k;
    UD_FAIL_INPUT("unknown toy distribution '", name, "' (valid: ", known, ")");
  }
  UD_CHECK_INPUT(n > 0, "the number of samples must be positive, got ", n);
  const torch::Tensor idx = rng::arange_indices(0, n);
  const torch::Tensor u = rng::uniform({seed, rng::Purpose::kDataGen}, 0, idx, {4});
  const torch::Tensor z = rng::normal({seed, rng::Purpose::kDataGen}, 1, idx, {2});
  return it->second(u.to(torch::kFloat64), z.to(torch::kFloat64)).to(torch::kFloat32).contiguous();
}

}  // namespace unidiff::data
