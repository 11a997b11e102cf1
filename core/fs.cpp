#include "core/fs.h"

#include <ftw.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <stdexcept>
#include <cstring>
#include <string>

#include <zlib.h>

#include <fstream>
#include <vector>

#include "core/error.h"

namespace unidiff::fs {
namespace {

thread_local int64_t g_removed = 0;

int remove_entry(const char* path, const struct stat*, int, struct FTW*) {
  if (::remove(path) != 0) return -1;
  ++g_removed;
  return 0;
}

}  // namespace

int64_t remove_tree(const std::filesystem::path& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return 0;
  g_removed = 0;
  if (::nftw(path.c_str(), remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0) {
    throw std::runtime_error("cannot remove '" + path.string() + "' (errno " +
                             std::to_string(errno) + ")");
  }
  return g_removed;
}

}  // namespace unidiff::fs

namespace unidiff::fs {

MappedFile::MappedFile(const std::filesystem::path& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  UD_CHECK_INPUT(fd >= 0, "cannot open '", path.string(), "': ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    UD_FAIL_INPUT("cannot stat '", path.string(), "': ", std::strerror(err));
  }
  size_ = static_cast<int64_t>(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, static_cast<size_t>(size_), PROT_READ, MAP_SHARED, fd, 0);
    const int err = errno;
    ::close(fd);
    if (p == MAP_FAILED) {
      throw std::runtime_error("mmap of '" + path.string() + "' failed: " + std::strerror(err));
    }
    data_ = static_cast<const uint8_t*>(p);
  } else {
    ::close(fd);
  }
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), static_cast<size_t>(size_));
}

}  // namespace unidiff::fs

namespace unidiff::fs {

void sync_directory(const std::filesystem::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("cannot open directory '" + dir.string() + "' to sync it");
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) throw std::runtime_error("fsync of directory '" + dir.string() + "' failed");
}

void write_text_atomically(const std::filesystem::path& path, const std::string& text) {
  std::string tmp_name = ".";  // built step by step: GCC 12 warns falsely on a chain of +
  tmp_name += path.filename().string();
  tmp_name += ".tmp";
  tmp_name += std::to_string(::getpid());
  const std::filesystem::path tmp = path.parent_path() / tmp_name;
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("cannot create '" + tmp.string() + "': " + std::strerror(errno));
  const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
                  ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) {
    ::unlink(tmp.c_str());
    throw std::runtime_error("writing '" + tmp.string() + "' failed");
  }
  std::filesystem::rename(tmp, path);
  sync_directory(path.parent_path().empty() ? std::filesystem::path(".") : path.parent_path());
}

FileDigest digest_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  UD_CHECK_INPUT(in.good(), "cannot open '", path.string(), "'");
  FileDigest d;
  uLong crc = crc32(0L, Z_NULL, 0);
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const std::streamsize got = in.gcount();
    if (got <= 0) break;
    crc = crc32(crc, reinterpret_cast<const Bytef*>(buf.data()), static_cast<uInt>(got));
    d.size += got;
  }
  d.crc32 = static_cast<uint32_t>(crc);
  return d;
}

}  // namespace unidiff::fs
