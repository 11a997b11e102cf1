// Reading a JSON object of settings written by another program (a diffusers config.json): typed
// getters that refuse with one message naming the file, the key, its value and why, and a record
// of the keys read, so that the others can be refused or reported.
#pragma once

#include <algorithm>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"

namespace unidiff {

class JsonFields {
 public:
  /// `what` names the file in messages ("'dir/config.json'"); `target` is what the values must map
  /// to ("unidiff's unet"). A value that is not an object throws InputError.
  JsonFields(const nlohmann::json& object, std::string what, std::string target)
      : object_(object), what_(std::move(what)), target_(std::move(target)) {
    UD_CHECK_INPUT(object_.is_object(), what_, " is not a JSON object");
  }

  /// The value of `key`, or nullptr when it is absent or null; either way `key` counts as read.
  const nlohmann::json* get(const std::string& key) {
    read_.insert(key);
    const auto it = object_.find(key);
    return it == object_.end() || it->is_null() ? nullptr : &*it;
  }
  bool has(const std::string& key) const { return object_.contains(key); }

  /// "WHAT: KEY = VALUE does not map to TARGET: WHY" as an InputError (VALUE: the key's, or `v`).
  [[noreturn]] void refuse(const std::string& key, const std::string& why) const {
    refuse(key, object_.contains(key) ? object_.at(key) : nlohmann::json(), why);
  }
  [[noreturn]] void refuse(const std::string& key, const nlohmann::json& v, const std::string& why) const {
    UD_FAIL_INPUT(what_, ": ", key, " = ", v.dump(), " does not map to ", target_, ": ", why);
  }

  int64_t integer(const std::string& key, int64_t fallback) {
    const nlohmann::json* v = get(key);
    if (v == nullptr) return fallback;
    if (!v->is_number_integer()) refuse(key, "an integer is expected");
    return v->get<int64_t>();
  }
  double real(const std::string& key, double fallback) {
    const nlohmann::json* v = get(key);
    if (v == nullptr) return fallback;
    if (!v->is_number()) refuse(key, "a number is expected");
    return v->get<double>();
  }
  /// A string that must be one of `allowed`; absent or null: the first.
  std::string one_of(const std::string& key, const std::vector<std::string>& allowed, const std::string& why) {
    const nlohmann::json* v = get(key);
    if (v == nullptr) return allowed.front();
    if (!v->is_string() || std::find(allowed.begin(), allowed.end(), v->get<std::string>()) == allowed.end()) {
      refuse(key, why);
    }
    return v->get<std::string>();
  }
  /// Refused unless absent, null or equal to `expected`.
  void must_be(const std::string& key, const nlohmann::json& expected, const std::string& why) {
    const nlohmann::json* v = get(key);
    if (v != nullptr && *v != expected) refuse(key, why);
  }
  /// A non-empty list of strings.
  std::vector<std::string> strings(const std::string& key) {
    const nlohmann::json* v = get(key);
    UD_CHECK_INPUT(v != nullptr && v->is_array() && !v->empty(), what_, ": ", key, " must be a non-empty list");
    std::vector<std::string> out;
    for (const auto& s : *v) {
      if (!s.is_string()) refuse(key, "a list of names is expected");
      out.push_back(s.get<std::string>());
    }
    return out;
  }

  /// The keys not read so far, without those starting with '_' (metadata such as _class_name).
  std::vector<std::string> unread() const {
    std::vector<std::string> out;
    for (const auto& [key, v] : object_.items()) {
      if (key.rfind('_', 0) != 0 && !read_.count(key)) out.push_back(key);
    }
    return out;
  }
  const nlohmann::json& object() const { return object_; }

 private:
  const nlohmann::json& object_;
  std::string what_, target_;
  std::set<std::string> read_;
};

}  // namespace unidiff
