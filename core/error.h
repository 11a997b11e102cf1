// Error verbs shared by every folder. UD_CHECK_INPUT is for what a user, a file or a flag can get
// wrong: it throws InputError, which the launcher turns into exit code 2 with the message alone.
// UD_ASSERT is for our own invariants: it throws std::logic_error naming the expression and place.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace unidiff {

/// Bad input (a flag, a file, a shape, a value). The message names the problem and, where there
/// is a fixed set of valid choices, lists them.
class InputError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {

template <typename... Args>
std::string str_cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

[[noreturn]] void throw_input_error(const std::string& message);
[[noreturn]] void throw_internal_error(const char* file, int line, const char* expr,
                                       const std::string& message);

}  // namespace detail
}  // namespace unidiff

#define UD_CHECK_INPUT(cond, ...)                                                  \
  do {                                                                             \
    if (!(cond)) ::unidiff::detail::throw_input_error(                             \
        ::unidiff::detail::str_cat(__VA_ARGS__));                                  \
  } while (0)

#define UD_FAIL_INPUT(...) \
  ::unidiff::detail::throw_input_error(::unidiff::detail::str_cat(__VA_ARGS__))

#define UD_ASSERT(cond, ...)                                                       \
  do {                                                                             \
    if (!(cond)) ::unidiff::detail::throw_internal_error(                          \
        __FILE__, __LINE__, #cond, ::unidiff::detail::str_cat("" __VA_OPT__(, ) __VA_ARGS__)); \
  } while (0)
