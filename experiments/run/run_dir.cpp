// experiments/run/run_dir.h.
#include "experiments/run/run_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/fs.h"

namespace unidiff::experiments {
namespace {

namespace sfs = std::filesystem;

/// A run directory written before the marker existed: config.flags beside what a run writes.
bool legacy_run_dir(const sfs::path& dir) {
  return sfs::is_regular_file(dir / "config.flags") &&
         (sfs::is_directory(dir / "checkpoints") || sfs::exists(dir / "model.h5") ||
          sfs::exists(dir / "metrics.jsonl"));
}

}  // namespace

void check_run_dir_owned(const std::string& run_dir) {
  const sfs::path dir(run_dir);
  std::error_code ec;
  if (!sfs::exists(dir, ec)) return;
  UD_CHECK_INPUT(sfs::is_directory(dir, ec), "--run_dir '", run_dir, "' exists and is not a directory");
  if (sfs::exists(dir / kRunMarker, ec) || legacy_run_dir(dir)) return;
  const bool empty = sfs::directory_iterator(dir, ec) == sfs::directory_iterator();
  UD_CHECK_INPUT(!ec, "--run_dir '", run_dir, "' cannot be read: ", ec.message());
  UD_CHECK_INPUT(empty, "--run_dir '", run_dir, "' is not empty and is not a unidiff run directory (it has no ",
                 kRunMarker, "); choose a new or empty directory: unidiff writes and deletes files there");
}

void mark_run_dir(const std::string& run_dir) {
  const sfs::path marker = sfs::path(run_dir) / kRunMarker;
  if (sfs::exists(marker)) return;
  std::ofstream(marker) << "a unidiff run directory: unidiff writes config.flags, metrics.jsonl, model.h5 and "
                           "checkpoints/ here\n";
}

void remove_checkpoints(const std::string& run_dir) {
  const sfs::path dir = sfs::path(run_dir) / "checkpoints";
  std::error_code ec;
  if (!sfs::is_directory(dir, ec)) return;
  for (const auto& e : sfs::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (n.rfind("step-", 0) == 0 || n == "latest" || n.rfind("latest.", 0) == 0 || n.rfind(".latest", 0) == 0) {
      fs::remove_tree(e.path());
    }
  }
}

RunDirLock::~RunDirLock() {
  if (fd_ >= 0) ::close(fd_);  // closing the descriptor drops the flock
}

std::string RunDirLock::acquire(const std::string& run_dir) {
  const sfs::path path = sfs::path(run_dir) / kRunLock;
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  UD_CHECK_INPUT(fd >= 0, "cannot open the lock file '", path.string(), "': ", std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    std::ifstream in(path);
    std::stringstream who;
    who << in.rdbuf();
    ::close(fd);
    std::string holder = who.str();
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    if (err != EWOULDBLOCK) return detail::str_cat("(flock failed: ", std::strerror(err), ")");
    return holder.empty() ? std::string("another job") : holder;
  }
  char host[256] = {0};
  ::gethostname(host, sizeof(host) - 1);
  const std::time_t now = std::time(nullptr);
  char when[64];
  std::strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", std::gmtime(&now));
  const std::string text = detail::str_cat("host ", host, ", pid ", ::getpid(), ", since ", when, "\n");
  if (::ftruncate(fd, 0) == 0) {
    const ssize_t n = ::pwrite(fd, text.data(), text.size(), 0);
    (void)n;
  }
  fd_ = fd;
  return "";
}

}  // namespace unidiff::experiments
