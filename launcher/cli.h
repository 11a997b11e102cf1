// Command-line parsing over declared settings (core/settings.h): sub-commands, per-command flag
// lists, recursive --flagfile with later flags overriding earlier ones, and errors that name the
// problem and the valid choices (thrown as InputError, i.e. exit code 2). The settings tables
// provide the flags, types, defaults, help texts and checks; this parser decides what is accepted.
#pragma once

#include <string>
#include <vector>

#include "core/settings.h"

namespace unidiff::launcher {

struct Command {
  std::string name;                          ///< e.g. "train", or "data toy"
  std::string summary;                       ///< one line for `unidiff --help`
  std::vector<settings::FlagInfo> flags;     ///< the flags this command accepts, in help order
};

struct ParsedArgs {
  std::string command;                       ///< the matched command's name
  bool help = false;                         ///< --help (or -h) was given
  settings::Assignments set;                 ///< (canonical name, value) as given, in order
};

/// Parses args for `command`: expands --flagfile, rejects unknown flags and bad values with
/// InputError; returns the assignments in order (aliases resolved to their flag's name).
ParsedArgs parse_flags(const Command& command, const std::vector<std::string>& args);

/// "--name=value" lines of `flags` with the values `set` gives them (the last one given), else
/// their defaults: the resolved configuration a run writes to config.flags.
std::string resolved_flags(const std::string& command, const std::vector<settings::FlagInfo>& flags,
                           const settings::Assignments& set);

/// The help text of one command: usage and each flag with type, default and description,
/// grouped under their headings.
std::string command_help(const Command& command);

}  // namespace unidiff::launcher
