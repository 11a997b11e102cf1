// libFuzzer target: model files (experiments/model_io.h) from edited copies of a trained toy MLP's
// model.h5 (attributes: architecture, sizes, schedule, prediction; params and ema groups), loaded
// with the EMA or the raw weights and run forward on one sample (tests/fuzz/fuzz_util.h).
#include <torch/torch.h>

#include "experiments/model_io.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace unidiff;
  static const std::filesystem::path seed = fuzz::seed("FUZZ_SEED_MODEL");
  FuzzedDataProvider p(data, size);
  const std::filesystem::path path = fuzz::fresh_copy(seed, "model.h5");
  fuzz::Editor(p, {"arch", "layers", "hidden", "time_dim", "num_classes", "guidance", "channels", "data_shape",
                   "diffusion_steps", "schedule", "prediction", "objective", "step"})
      .edit(path, 6);
  const bool ema = p.ConsumeBool();
  fuzz::refuse_or_read([&] {
    experiments::LoadedModel m = experiments::load_model(path, ema);
    int64_t numel = 1;
    for (const int64_t d : m.network.data_shape) numel *= d;
    if (numel > 0 && numel <= 4096) {
      std::vector<int64_t> shape{1};
      shape.insert(shape.end(), m.network.data_shape.begin(), m.network.data_shape.end());
      torch::NoGradGuard no_grad;
      (void)m.module->forward(torch::zeros(shape), torch::full({1}, 10.0)).sum().item<double>();
    }
  });
  return 0;
}
