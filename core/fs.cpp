#include "core/fs.h"

#include <ftw.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <stdexcept>
#include <string>

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
