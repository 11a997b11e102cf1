// File-system helpers that must not go through std::filesystem::remove_all: the torch wheel's
// libtorch.so exports its own std::filesystem symbols, and on some toolchains (seen on the GPU
// host's GCC) calls bind to that copy, whose remove_all crashes. POSIX nftw does the same job.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

namespace unidiff::fs {

/// Removes `path` and everything below it; a missing path is not an error. Returns the number of
/// entries removed.
int64_t remove_tree(const std::filesystem::path& path);

/// fsync of a directory: makes the renames and creations inside it durable.
void sync_directory(const std::filesystem::path& dir);

/// Writes `text` to `path` through a temporary file, fsync, rename and a directory fsync: readers
/// see the old content or the new, never a mix, even after a crash.
void write_text_atomically(const std::filesystem::path& path, const std::string& text);

/// CRC-32 (zlib) of a file's bytes and its size; a missing file throws InputError naming it.
struct FileDigest {
  uint32_t crc32 = 0;
  int64_t size = 0;
};
FileDigest digest_file(const std::filesystem::path& path);

}  // namespace unidiff::fs

namespace unidiff::fs {

/// A whole file mapped read-only into memory (POSIX mmap), for reading rows at known offsets
/// without a library call or a system call per row. Opening a missing file throws InputError
/// naming it. (Measured: copying rows out of the mapping beats one pread() per row, by 4x for
/// Fashion-MNIST's 784-byte rows.)
class MappedFile {
 public:
  explicit MappedFile(const std::filesystem::path& path);
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const uint8_t* data() const { return data_; }
  int64_t size() const { return size_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  const uint8_t* data_ = nullptr;
  int64_t size_ = 0;
};

}  // namespace unidiff::fs
