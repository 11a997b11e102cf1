// Out-of-line throwers for core/error.h, so the macros stay small at every call site.
#include "core/error.h"

namespace unidiff::detail {

void throw_input_error(const std::string& message) { throw InputError(message); }

void throw_internal_error(const char* file, int line, const char* expr,
                          const std::string& message) {
  std::ostringstream os;
  os << "internal error at " << file << ":" << line << ": check '" << expr << "' failed";
  if (!message.empty()) os << ": " << message;
  throw std::logic_error(os.str());
}

}  // namespace unidiff::detail
