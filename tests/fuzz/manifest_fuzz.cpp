// libFuzzer target: checkpoints (dist/checkpoint.h) from edited copies of a real checkpoint folder
// (its manifest.h5 or its shard: tensor shapes, piece tables, shard sizes and CRCs, attributes),
// opened and every tensor read back (tests/fuzz/fuzz_util.h).
#include <torch/torch.h>

#include "dist/checkpoint.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace unidiff;
  static const std::filesystem::path seed = fuzz::seed("FUZZ_SEED_CHECKPOINT");
  FuzzedDataProvider p(data, size);
  const std::filesystem::path dir = fuzz::fresh_copy(seed, "step-000000002");
  const bool shard = p.ConsumeBool();
  fuzz::Editor(p, {"shape", "pieces", "size", "crc32", "format", "step", "world_size", "dtype"})
      .edit(dir / (shard ? "shard-00000.h5" : "manifest.h5"), 6);
  fuzz::refuse_or_read([&] {
    const dist::CheckpointReader r(dir);
    for (const std::string& name : r.names()) (void)r.read(name).numel();
    (void)r.describe();
  });
  return 0;
}
