// Command-line parsing on top of the gflags registry: sub-commands, per-command flag lists,
// recursive --flagfile with later flags overriding earlier ones, and errors that name the problem
// and the valid choices (thrown as InputError, i.e. exit code 2). gflags provides the flag
// definitions, types, defaults, help texts and validators; this parser decides what is accepted.
#pragma once

#include <string>
#include <vector>

namespace unidiff::launcher {

struct Command {
  std::string name;                  ///< e.g. "train", or "data toy"
  std::string summary;               ///< one line for `unidiff --help`
  std::vector<std::string> flags;    ///< gflags names this command accepts
};

struct ParsedArgs {
  std::string command;               ///< the matched command's name
  bool help = false;                 ///< --help (or -h) was given
  std::vector<std::string> set;      ///< flags set explicitly, in order
};

/// Parses argv[first..] for `command`: sets gflags values, expands --flagfile, rejects unknown
/// flags and bad values with InputError.
ParsedArgs parse_flags(const Command& command, const std::vector<std::string>& args);

/// "--name=value" lines for every flag of the command (its resolved configuration).
std::string resolved_flags(const Command& command);

/// The help text of one command: usage and each flag with type, default and description.
std::string command_help(const Command& command);

}  // namespace unidiff::launcher
