#include "core/memory.h"

#include <malloc.h>

#include <cstdlib>
#include <cstring>

namespace unidiff::memory {

bool keep_freed_pages() {
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  if (tunables != nullptr && std::strstr(tunables, "glibc.malloc.") != nullptr) return false;
  constexpr int kMmapThreshold = 32 << 20;  // glibc's maximum on 64-bit hosts
  constexpr int kTrimThreshold = 512 << 20;
  const bool mmap_set = mallopt(M_MMAP_THRESHOLD, kMmapThreshold) == 1;
  const bool trim_set = mallopt(M_TRIM_THRESHOLD, kTrimThreshold) == 1;
  return mmap_set && trim_set;
}

}  // namespace unidiff::memory
