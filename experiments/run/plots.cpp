// experiments/run/plots.h.
#include "experiments/run/plots.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/image.h"
#include "core/log.h"

namespace unidiff::experiments {
namespace {

/// The numbers of one metrics row (a flat JSON object as JsonLine writes it), in order: null is NaN,
/// strings are skipped. A line that is not a JSON object gives nothing.
std::vector<std::pair<std::string, double>> metrics_row_numbers(const std::string& line) {
  std::vector<std::pair<std::string, double>> out;
  const nlohmann::ordered_json j = nlohmann::ordered_json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return out;
  for (const auto& [key, v] : j.items()) {
    if (v.is_number()) out.emplace_back(key, v.get<double>());
    else if (v.is_null()) out.emplace_back(key, std::nan(""));
  }
  return out;
}

}  // namespace

std::map<std::string, std::vector<std::pair<double, double>>> read_metrics(const std::string& metrics_path) {
  std::ifstream in(metrics_path);
  UD_CHECK_INPUT(in.good(), "'", metrics_path, "' does not exist or cannot be read (a run directory has one)");
  std::map<std::string, std::vector<std::pair<double, double>>> series;
  std::string line;
  while (std::getline(in, line)) {
    const auto fields = metrics_row_numbers(line);
    double step = std::nan("");
    for (const auto& [k, v] : fields) {
      if (k == "step") step = v;
    }
    if (std::isnan(step)) continue;
    for (const auto& [k, v] : fields) {
      if (k != "step") series[k].emplace_back(step, v);
    }
  }
  return series;
}

std::vector<std::string> write_plots(const std::string& run_dir) {
  namespace sfs = std::filesystem;
  const sfs::path metrics = sfs::path(run_dir) / "metrics.jsonl";
  UD_CHECK_INPUT(sfs::is_regular_file(metrics), "--run_dir '", run_dir, "' has no metrics.jsonl to plot");
  const auto series = read_metrics(metrics.string());
  const sfs::path dir = sfs::path(run_dir) / "plots";
  std::vector<std::string> written;
  for (const auto& [key, points] : series) {
    std::vector<double> ys;
    double first_step = 0, last_step = 0;
    for (const auto& [step, v] : points) {
      if (!std::isfinite(v)) continue;
      if (ys.empty()) first_step = step;
      last_step = step;
      ys.push_back(v);
    }
    if (ys.size() < 2) continue;
    sfs::create_directories(dir);
    std::string name = key;
    for (char& c : name) {
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-') c = '_';
    }
    const sfs::path out = dir / (name + ".png");
    image::write_png(out, image::line_plot(ys));
    char line[256];
    std::snprintf(line, sizeof(line), "%s: %zu points, steps %.0f-%.0f, %.4g -> %.4g: %s", key.c_str(), ys.size(),
                  first_step, last_step, ys.front(), ys.back(), out.c_str());
    log::info("plot", line);
    written.push_back(out.string());
  }
  return written;
}

}  // namespace unidiff::experiments
