// Progress of long work: human-readable durations and a rate-limited progress line with rate and
// ETA (sampling, evaluation, converters).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace unidiff {

/// "42s", "3m07s", "1h05m".
std::string format_duration(double seconds);

/// Progress of long work counted in `unit`s ("samples"): update(done) logs "<done>/<total> <unit>,
/// <rate>/s, eta <t>" at most every `every_s` seconds, and nothing during the first `quiet_s`
/// seconds, so short work stays silent and long work never goes quiet for long.
class Progress {
 public:
  Progress(std::string component, std::string unit, int64_t total, double quiet_s = 3, double every_s = 10);
  /// Logs when the quiet time and the interval since the last line have passed.
  void update(double done);
  /// Logs now (work that reports at its own cadence, e.g. every 1,000 items).
  void log(double done);

 private:
  std::string component_, unit_;
  int64_t total_;
  double quiet_s_, every_s_;
  std::chrono::steady_clock::time_point start_, last_;
};

}  // namespace unidiff
