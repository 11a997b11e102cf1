// launcher/cli.h.
#include "launcher/cli.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace unidiff::launcher {
namespace {

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

const settings::FlagInfo* find(const Command& c, const std::string& name) {
  for (const auto& f : c.flags) {
    if (f.name == name || std::find(f.aliases.begin(), f.aliases.end(), name) != f.aliases.end()) return &f;
  }
  return nullptr;
}

std::string flag_list(const Command& c) {
  std::string s;
  for (const auto& f : c.flags) s += (s.empty() ? "--" : ", --") + f.name;
  return s;
}

class Parser {
 public:
  explicit Parser(const Command& c) : command_(c) {}

  void parse(const std::vector<std::string>& args, const std::string& origin, int depth) {
    UD_CHECK_INPUT(depth < 8, "--flagfile nesting deeper than 8 levels at ", origin);
    for (size_t i = 0; i < args.size(); ++i) {
      const std::string& arg = args[i];
      if (arg == "--help" || arg == "-h" || arg == "--helpfull") {
        result_.help = true;
        continue;
      }
      UD_CHECK_INPUT(arg.rfind("-", 0) == 0, "unexpected argument '", arg, "' for 'unidiff ", command_.name, "'",
                     origin.empty() ? "" : " in " + origin, " (flags look like --name=value)");
      const std::string body = arg.substr(arg.rfind("--", 0) == 0 ? 2 : 1);
      std::string name = body, value;
      bool has_value = false;
      if (const auto eq = body.find('='); eq != std::string::npos) {
        name = body.substr(0, eq);
        value = body.substr(eq + 1);
        has_value = true;
      }
      if (name == "flagfile") {
        if (!has_value) {
          UD_CHECK_INPUT(i + 1 < args.size(), "--flagfile needs a file name");
          value = args[++i];
        }
        read_flagfile(value, depth);
        continue;
      }
      const settings::FlagInfo* flag = find(command_, name);
      if (flag == nullptr && !has_value && name.rfind("no", 0) == 0) {
        const settings::FlagInfo* negated = find(command_, name.substr(2));
        if (negated != nullptr && negated->type == "bool") {
          flag = negated;
          value = "false";
          has_value = true;
        }
      }
      UD_CHECK_INPUT(flag != nullptr, "unknown flag --", name, " for 'unidiff ", command_.name, "'",
                     origin.empty() ? "" : " in " + origin, "; valid flags: ", flag_list(command_));
      if (!has_value) {
        if (flag->type == "bool") {
          value = "true";
        } else {
          UD_CHECK_INPUT(i + 1 < args.size(), "flag --", name, " needs a value (", flag->type, ")");
          value = args[++i];
        }
      }
      try {
        flag->normalize(value);
      } catch (const InputError& e) {
        UD_FAIL_INPUT(e.what(), origin.empty() ? "" : " in " + origin);
      }
      result_.set.emplace_back(flag->name, value);
    }
  }

  ParsedArgs result() {
    result_.command = command_.name;
    return result_;
  }

 private:
  /// Bounds on what flagfiles may read in all (nesting is bounded by depth): a file that includes
  /// itself 20 times 6 levels deep would otherwise read 64 million files.
  static constexpr int64_t kMaxFlagfiles = 1000;
  static constexpr int64_t kMaxFlagfileBytes = 16 << 20;

  void read_flagfile(const std::string& path, int depth) {
    // The error_code forms: a name too long for the file system is bad input, not a
    // filesystem_error (found by the flagfile fuzzer, FUZZ_STRICT=1).
    std::error_code ec;
    UD_CHECK_INPUT(std::filesystem::is_regular_file(path, ec) && !ec, "--flagfile '", path,
                   "' does not exist or is not a file", ec ? " (" + ec.message() + ")" : std::string());
    UD_CHECK_INPUT(++files_read_ <= kMaxFlagfiles, "--flagfile '", path, "': more than ", kMaxFlagfiles,
                   " flagfiles read in all (do they include each other?)");
    const auto size = std::filesystem::file_size(path, ec);
    UD_CHECK_INPUT(!ec, "--flagfile '", path, "' cannot be read: ", ec.message());
    bytes_read_ += static_cast<int64_t>(size);
    UD_CHECK_INPUT(bytes_read_ <= kMaxFlagfileBytes, "--flagfile '", path, "': more than ", kMaxFlagfileBytes >> 20,
                   " MiB of flagfiles read in all");
    std::ifstream in(path);
    std::vector<std::string> lines;
    std::string line;
    int64_t number = 0;
    while (std::getline(in, line)) {
      ++number;
      UD_CHECK_INPUT(line.find('\0') == std::string::npos, "--flagfile '", path, "' line ", number,
                     " holds a NUL byte (a binary file?)");
      line = trim(line);
      if (line.empty() || line[0] == '#') continue;
      // A nested flagfile named by a relative path is found beside the file that names it.
      const std::string key = "--flagfile=";
      if (line.rfind(key, 0) == 0) {
        const std::filesystem::path nested(line.substr(key.size()));
        if (nested.is_relative() && !std::filesystem::exists(nested)) {
          line = key + (std::filesystem::path(path).parent_path() / nested).string();
        }
      }
      lines.push_back(line);
    }
    parse(lines, "flagfile '" + path + "'", depth + 1);
  }

  const Command& command_;
  ParsedArgs result_;
  int64_t files_read_ = 0, bytes_read_ = 0;
};

}  // namespace

ParsedArgs parse_flags(const Command& command, const std::vector<std::string>& args) {
  Parser p(command);
  p.parse(args, "", 0);
  return p.result();
}

std::string resolved_flags(const std::string& command, const std::vector<settings::FlagInfo>& flags,
                           const settings::Assignments& set) {
  std::ostringstream os;
  os << "# resolved configuration of 'unidiff " << command << "'\n";
  for (const auto& f : flags) {
    std::string value = f.default_text;
    for (const auto& [name, text] : set) {
      if (name == f.name) value = f.normalize(text);
    }
    os << "--" << f.name << "=" << value << "\n";
  }
  return os.str();
}

std::string command_help(const Command& command) {
  std::ostringstream os;
  os << "usage: unidiff " << command.name << " [--flagfile=FILE] [--flag=value ...]\n"
     << "  " << command.summary << "\n\nflags:\n";
  std::string group;
  for (const auto& f : command.flags) {
    if (f.group != group) {
      group = f.group;
      os << "\n" << group << ":\n";
    }
    os << "  --" << f.name << " (" << f.type << ", default " << (f.default_text.empty() ? "\"\"" : f.default_text)
       << ")\n      " << f.help << "\n";
    if (!f.aliases.empty()) {
      os << "      (also --";
      for (size_t i = 0; i < f.aliases.size(); ++i) os << (i ? ", --" : "") << f.aliases[i];
      os << ")\n";
    }
  }
  os << "\nFlags apply in order: --flagfile=F loads F's lines (one --flag=value each, # comments)\n"
        "and later flags override earlier ones.\n";
  return os.str();
}

}  // namespace unidiff::launcher
