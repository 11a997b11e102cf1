// libFuzzer target: flagfiles (launcher/cli.h), raw bytes as a flagfile of `unidiff train`, seeded
// with the project's recipes. Nested --flagfile lines, huge numbers, odd bytes: each is parsed or
// refused, never a crash or a hang.
#include <fstream>

#include "launcher/cli.h"
#include "launcher/commands.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace unidiff;
  static const launcher::Command* train = [] {
    for (const auto& c : launcher::commands()) {
      if (c.name == "train") return &c;
    }
    std::abort();
  }();
  const std::filesystem::path path = fuzz::work_dir() / "input.flags";
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  fuzz::refuse_or_read([&] { (void)launcher::parse_flags(*train, {"--flagfile=" + path.string()}); });
  return 0;
}
