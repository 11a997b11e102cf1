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

/// What identifies a file's content cheaply: device, inode, size and modification time (ns).
/// A reader that keeps a file open for a whole run records it at open and checks it before each
/// read: a file truncated, rewritten or replaced (renamed over) under the run is then named.
struct FileStamp {
  uint64_t device = 0;
  uint64_t inode = 0;
  int64_t size = 0;
  int64_t mtime_ns = 0;
};
/// The stamp of `path` now (stat, following links); throws InputError naming a missing file.
FileStamp stamp_of(const std::filesystem::path& path);
/// "" when `path`'s stamp is still `then`, else what changed ("it shrank from 800 to 0 bytes",
/// "it was replaced by another file", "it was modified", "it no longer exists").
std::string stamp_change(const std::filesystem::path& path, const FileStamp& then);

}  // namespace unidiff::fs

namespace unidiff::fs {

/// A whole file mapped read-only into memory (POSIX mmap), for reading rows at known offsets
/// without a library call or a system call per row. Opening a missing file throws InputError
/// naming it. (Measured: copying rows out of the mapping beats one pread() per row, by 4x for
/// Fashion-MNIST's 784-byte rows.) Reading a page beyond the end of a file truncated under the
/// mapping raises SIGBUS: every mapping is registered with a SIGBUS handler that ends the process
/// with exit 2 and a message naming the file (instead of a bare "Bus error"); readers also check
/// the file's FileStamp before each read, which names the change without the race.
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
  int guard_ = -1;  ///< the SIGBUS guard's slot of this mapping
};

}  // namespace unidiff::fs
