// The unidiff version recorded in checkpoints. CMakeLists.txt checks at configure time that it
// equals project(unidiff VERSION ...), so the two cannot drift apart.
#pragma once

namespace unidiff {

inline constexpr const char* kUnidiffVersion = "0.1.0";

}  // namespace unidiff
