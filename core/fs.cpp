#include "core/fs.h"

#include <ftw.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <signal.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <mutex>
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

FileStamp stamp_of(const std::filesystem::path& path) {
  struct stat st {};
  UD_CHECK_INPUT(::stat(path.c_str(), &st) == 0, "cannot stat '", path.string(), "': ", std::strerror(errno));
  FileStamp f;
  f.device = static_cast<uint64_t>(st.st_dev);
  f.inode = static_cast<uint64_t>(st.st_ino);
  f.size = static_cast<int64_t>(st.st_size);
  f.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec;
  return f;
}

std::string stamp_change(const std::filesystem::path& path, const FileStamp& then) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return "it no longer exists";
  if (static_cast<uint64_t>(st.st_dev) != then.device || static_cast<uint64_t>(st.st_ino) != then.inode) {
    return "it was replaced by another file";
  }
  const auto size = static_cast<int64_t>(st.st_size);
  if (size != then.size) {
    return detail::str_cat(size < then.size ? "it shrank from " : "it grew from ", then.size, " to ", size,
                           " bytes");
  }
  const int64_t mtime = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec;
  if (mtime != then.mtime_ns) return "it was modified";
  return "";
}

namespace {

// The SIGBUS guard: the address ranges of every live mapping with its file's name, in fixed slots
// the handler can read without locks or allocation (async-signal-safe: it only reads the slots,
// write()s and _exit()s). A slot is claimed and freed under a mutex by MappedFile.
constexpr int kGuardSlots = 4096;
constexpr int kExitBadInputCode = 2;  // dist/job.h's kExitBadInput (core does not see dist/)
struct GuardSlot {
  std::atomic<uintptr_t> begin{0};
  std::atomic<uintptr_t> end{0};
  char message[768] = {0};
};
GuardSlot* guard_slots() {
  static GuardSlot* slots = new GuardSlot[kGuardSlots];  // never freed: the handler may run at exit
  return slots;
}
std::mutex& guard_mutex() {
  static auto* m = new std::mutex;
  return *m;
}

// The SIGBUS action installed before ours (glog's failure handler, a debugger's): a fault outside
// our mappings goes to it.
struct sigaction g_previous_sigbus {};

void on_sigbus(int sig, siginfo_t* info, void* context) {
  const auto addr = reinterpret_cast<uintptr_t>(info->si_addr);
  GuardSlot* slots = guard_slots();
  for (int i = 0; i < kGuardSlots; ++i) {
    const uintptr_t b = slots[i].begin.load(std::memory_order_acquire);
    if (b != 0 && addr >= b && addr < slots[i].end.load(std::memory_order_acquire)) {
      const ssize_t ignored = ::write(2, slots[i].message, std::strlen(slots[i].message));
      (void)ignored;
      ::_exit(kExitBadInputCode);
    }
  }
  // Not one of ours: the handler that was there before, else the default action (a core dump
  // where enabled).
  const struct sigaction& prev = g_previous_sigbus;
  if ((prev.sa_flags & SA_SIGINFO) != 0 && prev.sa_sigaction != nullptr) {
    prev.sa_sigaction(sig, info, context);
    return;
  }
  if ((prev.sa_flags & SA_SIGINFO) == 0 && prev.sa_handler != SIG_DFL && prev.sa_handler != SIG_IGN &&
      prev.sa_handler != nullptr) {
    prev.sa_handler(sig);
    return;
  }
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

int claim_guard(const uint8_t* data, int64_t size, const std::filesystem::path& path) {
  static const bool installed = [] {
    struct sigaction sa {};
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGBUS, &sa, &g_previous_sigbus);
    return true;
  }();
  (void)installed;
  std::lock_guard<std::mutex> lock(guard_mutex());
  GuardSlot* slots = guard_slots();
  for (int i = 0; i < kGuardSlots; ++i) {
    if (slots[i].begin.load() != 0) continue;
    std::snprintf(slots[i].message, sizeof(slots[i].message),
                  "unidiff: error: '%s' shrank while it was being read (SIGBUS): a file must not change "
                  "while a run reads it\n",
                  path.c_str());
    slots[i].end.store(reinterpret_cast<uintptr_t>(data) + static_cast<uintptr_t>(size));
    slots[i].begin.store(reinterpret_cast<uintptr_t>(data), std::memory_order_release);
    return i;
  }
  return -1;  // more mappings than slots: this one reads unguarded
}

void release_guard(int slot) {
  if (slot < 0) return;
  std::lock_guard<std::mutex> lock(guard_mutex());
  guard_slots()[slot].begin.store(0, std::memory_order_release);
}

}  // namespace

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
    guard_ = claim_guard(data_, size_, path_);
  } else {
    ::close(fd);
  }
}

MappedFile::~MappedFile() {
  release_guard(guard_);
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
  size_t done = 0;  // a large write may be split (write() returns what it wrote)
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  const bool ok = done == text.size() && ::fsync(fd) == 0;
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
