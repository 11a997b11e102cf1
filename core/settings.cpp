// core/settings.h.
#include "core/settings.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "core/error.h"

namespace unidiff::settings {

Check positive() {
  return [](double v) { return v > 0 ? std::string() : std::string("must be positive"); };
}
Check non_negative() {
  return [](double v) { return v >= 0 ? std::string() : std::string("must be >= 0"); };
}
Check unit_interval() {
  return [](double v) { return v >= 0 && v < 1 ? std::string() : std::string("must be in [0, 1)"); };
}
Check at_most(double max) {
  return [max](double v) { return v <= max ? std::string() : "must be at most " + format_double(max); };
}

std::string type_name(Kind kind, bool optional) {
  std::string t;
  switch (kind) {
    case Kind::kBool: t = "bool"; break;
    case Kind::kInt: t = "int64"; break;
    case Kind::kDouble: t = "double"; break;
    case Kind::kString: t = "string"; break;
    case Kind::kIntList: t = "int64 list"; break;
    case Kind::kDoubleList: t = "double list"; break;
  }
  return optional ? t + " or empty" : t;
}

std::string format_double(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[40];
  // At least as many digits as the integer part has, so 80 prints as 80, not 8e+01 (up to 1e17).
  const double mag = std::floor(std::log10(std::fabs(v)));
  const int first = v != 0 && mag >= 0 && mag < 17 ? static_cast<int>(mag) + 1 : 1;
  for (int precision = first; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof(buf), "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

namespace detail {

bool parse_bool(const std::string& s) {
  if (s == "true" || s == "1" || s == "yes" || s == "on") return true;
  if (s == "false" || s == "0" || s == "no" || s == "off") return false;
  throw std::invalid_argument("expected bool (true or false)");
}

int64_t parse_int(const std::string& s, int64_t lo, int64_t hi) {
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  if (s.empty() || end == nullptr || *end != '\0' || errno == ERANGE) throw std::invalid_argument("expected int64");
  if (v < lo || v > hi) {
    throw std::invalid_argument("expected int64 in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  return v;
}

double parse_double(const std::string& s) {
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (s.empty() || end == nullptr || *end != '\0') throw std::invalid_argument("expected double");
  return v;
}

namespace {
std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> out;
  if (text.empty()) return out;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(item);
  if (text.back() == ',') out.emplace_back();
  return out;
}
}  // namespace

std::vector<int64_t> parse_int_list(const std::string& text) {
  std::vector<int64_t> out;
  for (const auto& item : split(text)) {
    char* end = nullptr;
    const long long v = std::strtoll(item.c_str(), &end, 10);
    if (item.empty() || end == nullptr || *end != '\0' || v <= 0) {
      throw std::invalid_argument("expected a comma-separated list of positive integers");
    }
    out.push_back(v);
  }
  return out;
}

std::vector<double> parse_double_list(const std::string& text) {
  std::vector<double> out;
  for (const auto& item : split(text)) {
    char* end = nullptr;
    const double v = std::strtod(item.c_str(), &end);
    if (item.empty() || end == nullptr || *end != '\0' || !std::isfinite(v)) {
      throw std::invalid_argument("expected a comma-separated list of numbers");
    }
    out.push_back(v);
  }
  return out;
}

std::string format_int_list(const std::vector<int64_t>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) {
    if (i > 0) s.push_back(',');
    s.append(std::to_string(v[i]));
  }
  return s;
}

std::string format_double_list(const std::vector<double>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) {
    if (i > 0) s.push_back(',');
    s.append(format_double(v[i]));
  }
  return s;
}

void bad_value(const std::string& flag, const std::string& text, const std::string& type,
               const std::string& reason, const std::string& help) {
  UD_FAIL_INPUT("bad value '", text, "' for --", flag, ": ", reason,
                reason.rfind("expected", 0) == 0 ? " (" + help + ")" : " (" + type + ": " + help + ")");
}

}  // namespace detail
}  // namespace unidiff::settings
