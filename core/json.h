// A one-line JSON object writer for metrics and command output (`{"a": 1, "b": "x"}`). Non-finite
// numbers become null. Not a parser: the numbers added are also kept as they are (numbers()), so a
// consumer of the values (the TensorBoard writer) does not parse the text back.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace unidiff {

class JsonLine {
 public:
  JsonLine& add(std::string_view key, double value) {
    numbers_.emplace_back(std::string(key), value);
    char buf[64];
    if (std::isfinite(value)) std::snprintf(buf, sizeof(buf), "%.9g", value);
    else std::snprintf(buf, sizeof(buf), "null");
    return raw(key, buf);
  }
  JsonLine& add(std::string_view key, int64_t value) {
    numbers_.emplace_back(std::string(key), static_cast<double>(value));
    return raw(key, std::to_string(value));
  }
  JsonLine& add(std::string_view key, int value) { return add(key, static_cast<int64_t>(value)); }
  JsonLine& add(std::string_view key, std::string_view value) { return raw(key, quote(value)); }
  JsonLine& add(std::string_view key, const char* value) { return add(key, std::string_view(value)); }
  JsonLine& add(std::string_view key, bool value) { return raw(key, value ? "true" : "false"); }
  /// A value already in JSON (an array, an object), written as is.
  JsonLine& raw(std::string_view key, const std::string& value) {
    if (!body_.empty()) body_ += ", ";
    body_ += quote(key) + ": " + value;
    return *this;
  }
  std::string str() const { return "{" + body_ + "}"; }
  /// The numbers added (ints and doubles, non-finite ones included), in order.
  const std::vector<std::pair<std::string, double>>& numbers() const { return numbers_; }

 private:
  static std::string quote(std::string_view s) {
    std::string out = "\"";
    for (char c : s) {
      switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\t': out += "\\t"; break;
        default:
          if (static_cast<unsigned char>(c) < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof(buf), "\\u%04x", c);
            out += buf;
          } else {
            out += c;
          }
      }
    }
    return out + "\"";
  }
  std::string body_;
  std::vector<std::pair<std::string, double>> numbers_;
};

}  // namespace unidiff
