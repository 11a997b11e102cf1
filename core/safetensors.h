// The safetensors format (Hugging Face): an 8-byte little-endian header length N, N bytes of JSON
// (`{"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
// "__metadata__": {"key": "value"}}`), then the tensors' raw little-endian bytes, row-major, at
// [begin, end) of the byte buffer that follows the header. Read and written here without the
// Python package; every number in a header is checked against the file before a byte is copied.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace unidiff::safetensors {

struct File {
  /// Tensors by name, in the order of their byte offsets (CPU, contiguous, their stored dtype).
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  std::map<std::string, std::string> metadata;  ///< "__metadata__" (string values only)

  /// The tensor called `name`, or an undefined tensor.
  torch::Tensor find(const std::string& name) const;
};

/// Parses a whole file's bytes; `what` names it in errors. Refused with InputError (naming the
/// tensor or the field): a header length beyond the file or over 100 MiB, a header that is not a
/// JSON object (or nests deeper than 64 levels), an unknown dtype, a shape that is not a list of
/// non-negative integers, an element count that overflows, offsets that are not [begin <= end]
/// inside the buffer or disagree with the shape's byte size, tensors that overlap or leave a hole
/// in the buffer, duplicate names, metadata values that are not strings.
File parse(std::string_view bytes, const std::string& what);

/// Reads `path` (InputError naming a missing or unreadable file) and parses it.
File read(const std::filesystem::path& path);

/// The file's bytes: a header (names sorted, padded with spaces to a multiple of 8 as the Python
/// writer does), then each tensor's bytes in the header's order. Tensors go through contiguous
/// CPU copies; float32/64, float16, bfloat16, int8/16/32/64, uint8 and bool are written.
std::string serialize(const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

/// serialize() written atomically to `path` (a failure never damages an existing file).
void write(const std::filesystem::path& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
           const std::map<std::string, std::string>& metadata = {});

}  // namespace unidiff::safetensors
