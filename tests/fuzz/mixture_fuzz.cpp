// libFuzzer target: Gaussian-mixture files (models/gmm.h) from edited copies of a valid mixture,
// loaded and asked for an exact posterior mean (tests/fuzz/fuzz_util.h).
#include <torch/torch.h>

#include "models/gmm.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace unidiff;
  static const std::filesystem::path seed = fuzz::seed("FUZZ_SEED_MIXTURE");
  FuzzedDataProvider p(data, size);
  const std::filesystem::path path = fuzz::fresh_copy(seed, "input.h5");
  fuzz::Editor(p, {"weights", "means", "stds"}).edit(path, 6);
  fuzz::refuse_or_read([&] {
    const models::GaussianMixture g = models::GaussianMixture::load(path);
    const torch::Tensor x = torch::zeros({2, g.dim()}, torch::kFloat64);
    (void)g.posterior_mean(x, torch::tensor(0.6, torch::kFloat64), torch::tensor(0.8, torch::kFloat64))
        .sum()
        .item<double>();
  });
  return 0;
}
