// File-system helpers that must not go through std::filesystem::remove_all: the torch wheel's
// libtorch.so exports its own std::filesystem symbols, and on some toolchains (seen on the GPU
// host's GCC) calls bind to that copy, whose remove_all crashes. POSIX nftw does the same job.
#pragma once

#include <filesystem>

namespace unidiff::fs {

/// Removes `path` and everything below it; a missing path is not an error. Returns the number of
/// entries removed.
int64_t remove_tree(const std::filesystem::path& path);

}  // namespace unidiff::fs
