// libFuzzer target: datasets (data/dataset.h), loaded whole and streamed, from edited copies of a
// float dataset (toy moons) and a labelled uint8 image dataset (tests/fuzz/fuzz_util.h).
#include <torch/torch.h>

#include "data/dataset.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace unidiff;
  static const std::filesystem::path seeds[] = {fuzz::seed("FUZZ_SEED_DATASET"), fuzz::seed("FUZZ_SEED_IMAGES")};
  FuzzedDataProvider p(data, size);
  const std::filesystem::path path = fuzz::fresh_copy(seeds[p.ConsumeBool() ? 1 : 0], "input.h5");
  fuzz::Editor(p, {"data", "labels", "num_classes", "classes"}).edit(path, 6);
  const bool stream = p.ConsumeBool();
  fuzz::refuse_or_read([&] {
    const data::TensorDataset ds =
        stream ? data::TensorDataset::open_streaming(path.string()) : data::TensorDataset::load(path.string());
    const int64_t n = std::min<int64_t>(ds.size(), 64);
    const data::Batch b = ds.get(torch::arange(n, torch::kInt64));
    if (b.x.numel() > 0) (void)b.x.sum().item<double>();
  });
  return 0;
}
