// glog-backed implementation of core/log.h. This file must not include LibTorch.
#include "core/log.h"

#include <glog/logging.h>

#include <cstdio>
#include <mutex>

namespace unidiff::log {
namespace {
int g_rank = 0;
bool g_init = false;
std::mutex g_mutex;

std::string prefix(std::string_view component) {
  std::string p;
  if (g_rank > 0) p += "[rank " + std::to_string(g_rank) + "] ";
  p += "[";
  p += component;
  p += "] ";
  return p;
}
}  // namespace

void init(const char* argv0, int rank) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_rank = rank < 0 ? 0 : rank;
  if (g_init) return;
  g_init = true;
  FLAGS_logtostderr = true;
  FLAGS_log_prefix = false;
  google::InitGoogleLogging(argv0);
}

void set_rank(int rank) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_rank = rank < 0 ? 0 : rank;
}

void info(std::string_view component, const std::string& message) {
  if (g_rank != 0) return;
  if (!g_init) {
    std::fprintf(stderr, "%s%s\n", prefix(component).c_str(), message.c_str());
    return;
  }
  LOG(INFO) << prefix(component) << message;
}

void warn(std::string_view component, const std::string& message) {
  if (!g_init) {
    std::fprintf(stderr, "%swarning: %s\n", prefix(component).c_str(), message.c_str());
    return;
  }
  LOG(WARNING) << prefix(component) << "warning: " << message;
}

void error(std::string_view component, const std::string& message) {
  if (!g_init) {
    std::fprintf(stderr, "%serror: %s\n", prefix(component).c_str(), message.c_str());
    return;
  }
  LOG(ERROR) << prefix(component) << "error: " << message;
}

}  // namespace unidiff::log
