// core/progress.h.
#include "core/progress.h"

#include <algorithm>
#include <cstdio>

#include "core/log.h"

namespace unidiff {

std::string format_duration(double seconds) {
  const auto s = static_cast<int64_t>(std::max(0.0, seconds) + 0.5);
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof(buf), "%ldh%02ldm", s / 3600, (s % 3600) / 60);
  else if (s >= 60) std::snprintf(buf, sizeof(buf), "%ldm%02lds", s / 60, s % 60);
  else std::snprintf(buf, sizeof(buf), "%lds", s);
  return buf;
}

Progress::Progress(std::string component, std::string unit, int64_t total, double quiet_s, double every_s)
    : component_(std::move(component)),
      unit_(std::move(unit)),
      total_(total),
      quiet_s_(quiet_s),
      every_s_(every_s),
      start_(std::chrono::steady_clock::now()),
      last_(start_) {}

void Progress::update(double done) {
  const auto now = std::chrono::steady_clock::now();
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  if (elapsed < quiet_s_ || std::chrono::duration<double>(now - last_).count() < every_s_ || done <= 0) return;
  log(done);
}

void Progress::log(double done) {
  last_ = std::chrono::steady_clock::now();
  const double rate = done / std::max(std::chrono::duration<double>(last_ - start_).count(), 1e-9);
  char line[200];
  std::snprintf(line, sizeof(line), "%.0f/%ld %s, %.3g %s/s, eta %s", done, static_cast<long>(total_), unit_.c_str(),
                rate, unit_.c_str(),
                format_duration(std::max(0.0, static_cast<double>(total_) - done) / std::max(rate, 1e-9)).c_str());
  log::info(component_, line);
}

}  // namespace unidiff
