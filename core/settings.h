// Settings declared once. A Table<C> lists the settings of a config struct C; each entry names a
// member (through a chain of member pointers), its command-line flag, a help text, optionally the
// attribute that stores it in a model file, and whether it is guarded (a resume must not silently
// change it). The default is the struct's own default member initialiser. From that one
// declaration come the flag and its parsing, `--help`, the resolved configuration a run writes
// (config.flags), model-file attributes, and the resume guard: nothing lists a setting twice.
//
// Types: bool, the integers (range-checked for the member's type), double, std::string,
// std::vector<int64_t> and std::vector<double> (comma-separated), and std::optional of a scalar
// (empty text = unset; per-group overrides that default to the run's value).
// Doubles are written in the shortest form that reads back to the same number ("0.001", "1e-05").
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace unidiff::settings {

enum class Kind { kBool, kInt, kDouble, kString, kIntList, kDoubleList };

/// A value as a file attribute holds it: lists as their comma-separated text.
using Value = std::variant<bool, int64_t, double, std::string>;

/// A numeric check: returns why `v` is refused ("must be positive"), or "" when it is fine.
using Check = std::function<std::string(double v)>;
Check positive();
Check non_negative();
Check unit_interval();  ///< [0, 1)
Check at_most(double max);

/// The declaration of one setting, without its binding to a struct.
struct Decl {
  Decl(std::string name, std::string help) : name(std::move(name)), help(std::move(help)) {}
  Decl& guarded(bool g = true) { is_guarded = g; return *this; }
  Decl& attr(std::string a) { attribute = std::move(a); return *this; }
  Decl& check(Check c) { checks.push_back(std::move(c)); return *this; }
  /// Also accepted under this name on the command line (a renamed flag).
  Decl& alias(std::string a) { aliases.push_back(std::move(a)); return *this; }
  /// A model file without this attribute is refused (else the default is taken: older files).
  Decl& required(bool r = true) { is_required = r; return *this; }

  std::string name;       ///< flag name without dashes; "" = an attribute only (no flag)
  std::string help;
  std::string attribute;  ///< model-file attribute name ("" = none)
  bool is_guarded = false;
  bool is_required = false;
  std::vector<Check> checks;
  std::vector<std::string> aliases;
};

/// "int64", "double", "string", "bool", "int64 list", "double list" (+ " or empty" when optional).
std::string type_name(Kind kind, bool optional);
/// The shortest decimal text that reads back to `v` exactly.
std::string format_double(double v);

namespace detail {

// Parsing and formatting of one scalar or list type. parse throws InputError-free
// std::invalid_argument carrying the reason; the table adds the flag's name.
bool parse_bool(const std::string& text);
int64_t parse_int(const std::string& text, int64_t lo, int64_t hi);
double parse_double(const std::string& text);
std::vector<int64_t> parse_int_list(const std::string& text);
std::vector<double> parse_double_list(const std::string& text);
std::string format_int_list(const std::vector<int64_t>& v);
std::string format_double_list(const std::vector<double>& v);
[[noreturn]] void bad_value(const std::string& flag, const std::string& text, const std::string& type,
                            const std::string& reason, const std::string& help);

template <class T>
struct Traits;  // per member type: kind, parse(text), format(value), value(), from(Value)

template <>
struct Traits<bool> {
  static constexpr Kind kind = Kind::kBool;
  static bool parse(const std::string& s) { return parse_bool(s); }
  static std::string format(bool v) { return v ? "true" : "false"; }
  static double number(bool v) { return v ? 1 : 0; }
  static Value value(bool v) { return v; }
  static bool from(const Value& v) {
    if (const auto* i = std::get_if<int64_t>(&v)) return *i != 0;
    return std::get<bool>(v);
  }
};

template <class T>
  requires(std::is_integral_v<T> && !std::is_same_v<T, bool>)
struct Traits<T> {
  static constexpr Kind kind = Kind::kInt;
  static T parse(const std::string& s) {
    return static_cast<T>(parse_int(s, static_cast<int64_t>(std::numeric_limits<T>::min()),
                                    std::numeric_limits<T>::max() > std::numeric_limits<int64_t>::max()
                                        ? std::numeric_limits<int64_t>::max()
                                        : static_cast<int64_t>(std::numeric_limits<T>::max())));
  }
  static std::string format(T v) { return std::to_string(v); }
  static double number(T v) { return static_cast<double>(v); }
  static Value value(T v) { return static_cast<int64_t>(v); }
  static T from(const Value& v) { return static_cast<T>(std::get<int64_t>(v)); }
};

template <>
struct Traits<double> {
  static constexpr Kind kind = Kind::kDouble;
  static double parse(const std::string& s) { return parse_double(s); }
  static std::string format(double v) { return format_double(v); }
  static double number(double v) { return v; }
  static Value value(double v) { return v; }
  static double from(const Value& v) {
    if (const auto* i = std::get_if<int64_t>(&v)) return static_cast<double>(*i);
    return std::get<double>(v);
  }
};

template <>
struct Traits<std::string> {
  static constexpr Kind kind = Kind::kString;
  static std::string parse(const std::string& s) { return s; }
  static std::string format(const std::string& v) { return v; }
  static double number(const std::string&) { return 0; }
  static Value value(const std::string& v) { return v; }
  static std::string from(const Value& v) { return std::get<std::string>(v); }
};

template <>
struct Traits<std::vector<int64_t>> {
  static constexpr Kind kind = Kind::kIntList;
  static std::vector<int64_t> parse(const std::string& s) { return parse_int_list(s); }
  static std::string format(const std::vector<int64_t>& v) { return format_int_list(v); }
  static Value value(const std::vector<int64_t>& v) { return format(v); }
  static std::vector<int64_t> from(const Value& v) { return parse(std::get<std::string>(v)); }
};

template <>
struct Traits<std::vector<double>> {
  static constexpr Kind kind = Kind::kDoubleList;
  static std::vector<double> parse(const std::string& s) { return parse_double_list(s); }
  static std::string format(const std::vector<double>& v) { return format_double_list(v); }
  static Value value(const std::vector<double>& v) { return format(v); }
  static std::vector<double> from(const Value& v) { return parse(std::get<std::string>(v)); }
};

template <class T>
struct Traits<std::optional<T>> {
  static constexpr Kind kind = Traits<T>::kind;
  static std::optional<T> parse(const std::string& s) {
    if (s.empty()) return std::nullopt;
    return Traits<T>::parse(s);
  }
  static std::string format(const std::optional<T>& v) { return v ? Traits<T>::format(*v) : ""; }
  static Value value(const std::optional<T>& v) { return format(v); }
  static std::optional<T> from(const Value& v) { return parse(std::get<std::string>(v)); }
};

template <class T>
struct IsOptional : std::false_type {};
template <class T>
struct IsOptional<std::optional<T>> : std::true_type {};

/// The numbers a check sees: the value, each element of a list, nothing for strings and unset
/// optionals.
template <class T>
std::vector<double> numbers(const T& v) {
  if constexpr (IsOptional<T>::value) {
    if (!v) return {};
    return numbers(*v);
  } else if constexpr (std::is_same_v<T, std::vector<int64_t>> || std::is_same_v<T, std::vector<double>>) {
    return std::vector<double>(v.begin(), v.end());
  } else if constexpr (std::is_same_v<T, std::string>) {
    return {};
  } else {
    return {Traits<T>::number(v)};
  }
}

}  // namespace detail

/// One declared setting of config struct C.
template <class C>
struct Setting {
  Decl decl{"", ""};
  Kind kind = Kind::kString;
  bool optional = false;
  std::function<std::string(const C&)> format;             ///< the value as flag text
  /// text -> member; InputError naming `flag` on bad text.
  std::function<void(C&, const std::string& text, const std::string& flag)> parse_as;
  std::function<Value(const C&)> value;                     ///< the value as a file attribute
  std::function<void(C&, const Value&)> assign;             ///< file attribute -> member

  const std::string& name() const { return decl.name; }
  void parse(C& c, const std::string& text) const { parse_as(c, text, decl.name); }
  std::string type() const { return type_name(kind, optional); }
};

/// "--name=value" assignments in the order given (later ones win).
using Assignments = std::vector<std::pair<std::string, std::string>>;

template <class C>
class Table {
 public:
  /// Declares the member reached by `path` (member pointers applied in turn: &C::optim, &Optim::lr).
  template <class... M>
  Table& add(Decl decl, M... path) {
    using T = std::remove_cvref_t<decltype((std::declval<C&>() .* ... .* path))>;
    using Tr = detail::Traits<T>;
    Setting<C> s;
    s.decl = std::move(decl);
    s.kind = Tr::kind;
    s.optional = detail::IsOptional<T>::value;
    s.format = [path...](const C& c) { return Tr::format((c .* ... .* path)); };
    const std::string type = s.type();
    s.parse_as = [path..., d = s.decl, type](C& c, const std::string& text, const std::string& flag) {
      T v;
      try {
        v = Tr::parse(text);
      } catch (const std::invalid_argument& e) {
        detail::bad_value(flag, text, type, e.what(), d.help);
      }
      for (double x : detail::numbers(v)) {
        for (const Check& check : d.checks) {
          const std::string why = check(x);
          if (!why.empty()) detail::bad_value(flag, text, type, why, d.help);
        }
      }
      (c .* ... .* path) = std::move(v);
    };
    s.value = [path...](const C& c) { return Tr::value((c .* ... .* path)); };
    // A file's attribute passes the same checks as the flag (a hostile model file's layers=10^6).
    s.assign = [path..., d = s.decl](C& c, const Value& v) {
      T x = Tr::from(v);
      for (double n : detail::numbers(x)) {
        for (const Check& check : d.checks) {
          const std::string why = check(n);
          if (!why.empty()) throw std::invalid_argument(why + " (got " + format_double(n) + ")");
        }
      }
      (c .* ... .* path) = std::move(x);
    };
    entries_.push_back(std::move(s));
    return *this;
  }

  /// Declares every setting of `other` (a table of the member struct reached by `path`), with
  /// flag names prefixed by `prefix` ("fake_" + "optim_lr"); attributes are not prefixed.
  template <class D, class... M>
  Table& include(const Table<D>& other, const std::string& prefix, M... path) {
    for (const Setting<D>& d : other.all()) {
      Setting<C> s;
      s.decl = d.decl;
      if (!s.decl.name.empty()) s.decl.name = prefix + s.decl.name;
      for (auto& a : s.decl.aliases) a = prefix + a;
      s.kind = d.kind;
      s.optional = d.optional;
      s.format = [path..., f = d.format](const C& c) { return f((c .* ... .* path)); };
      s.parse_as = [path..., p = d.parse_as](C& c, const std::string& text, const std::string& flag) {
        p((c .* ... .* path), text, flag);
      };
      s.value = [path..., f = d.value](const C& c) { return f((c .* ... .* path)); };
      s.assign = [path..., f = d.assign](C& c, const Value& v) { f((c .* ... .* path), v); };
      entries_.push_back(std::move(s));
    }
    return *this;
  }

  const std::vector<Setting<C>>& all() const { return entries_; }
  /// The setting with this flag name (or alias), or nullptr.
  const Setting<C>* find(const std::string& name) const {
    for (const auto& s : entries_) {
      if (!s.decl.name.empty() && s.decl.name == name) return &s;
      for (const auto& a : s.decl.aliases) {
        if (a == name) return &s;
      }
    }
    return nullptr;
  }
  /// The setting whose flag name or, for attribute-only settings, attribute name is `key` (the
  /// key guarded() uses); nullptr if none.
  const Setting<C>* find_key(const std::string& key) const {
    for (const auto& s : entries_) {
      if ((s.decl.name.empty() ? s.decl.attribute : s.decl.name) == key) return &s;
    }
    return nullptr;
  }
  /// Applies the assignments this table knows, in order; others are skipped (they belong to
  /// another table of the same command). A bad value throws InputError naming the flag.
  void apply(C& c, const Assignments& assignments) const {
    for (const auto& [name, text] : assignments) {
      if (const Setting<C>* s = find(name)) s->parse(c, text);
    }
  }
  C build(const Assignments& assignments) const {
    C c{};
    apply(c, assignments);
    return c;
  }
  /// "--name=value" lines of every flag.
  std::string flags_text(const C& c) const {
    std::string out;
    for (const auto& s : entries_) {
      if (!s.decl.name.empty()) out += "--" + s.decl.name + "=" + s.format(c) + "\n";
    }
    return out;
  }
  /// The guarded settings' values by flag name (the resume guard).
  std::map<std::string, std::string> guarded(const C& c) const {
    std::map<std::string, std::string> out;
    for (const auto& s : entries_) {
      if (s.decl.is_guarded) out[s.decl.name.empty() ? s.decl.attribute : s.decl.name] = s.format(c);
    }
    return out;
  }

 private:
  std::vector<Setting<C>> entries_;
};

/// A table's flags without its struct: what a command line parser and `--help` need.
struct FlagInfo {
  std::string name;
  std::vector<std::string> aliases;
  std::string type;
  std::string default_text;
  std::string help;
  std::string group;  ///< heading in --help ("" = the command's own)
  /// The value as the table writes it (config.flags); throws InputError on a bad value.
  std::function<std::string(const std::string&)> normalize;
};

template <class C>
std::vector<FlagInfo> flag_infos(const Table<C>& table, const std::string& group = "") {
  std::vector<FlagInfo> out;
  const C defaults{};
  for (const auto& s : table.all()) {
    if (s.decl.name.empty()) continue;
    out.push_back({s.decl.name, s.decl.aliases, s.type(), s.format(defaults), s.decl.help, group,
                   [parse = s.parse_as, format = s.format, name = s.decl.name](const std::string& text) {
                     C scratch{};
                     parse(scratch, text, name);
                     return format(scratch);
                   }});
  }
  return out;
}

}  // namespace unidiff::settings
