// libFuzzer target: safetensors files (core/safetensors.h), raw bytes parsed as a whole file, seeded
// with a small valid file (scripts/fuzz.sh writes it). Header lengths, JSON, dtypes, shapes and
// offsets: each is read or refused with InputError, never a crash, an out-of-bounds read or an
// allocation the file does not back.
#include <string_view>

#include "core/safetensors.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace unidiff;
  fuzz::refuse_or_read([&] {
    const auto file = safetensors::parse(std::string_view(reinterpret_cast<const char*>(data), size), "input");
    // A file that parses serializes again and parses to the same tensors.
    const auto again = safetensors::parse(safetensors::serialize(file.tensors, file.metadata), "again");
    if (again.tensors.size() != file.tensors.size()) std::abort();
  });
  return 0;
}
