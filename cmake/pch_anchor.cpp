// Anchor translation unit that owns the shared precompiled header (cmake/unidiff_pch.h).
namespace unidiff::detail {
int pch_anchor() { return 0; }
}  // namespace unidiff::detail
