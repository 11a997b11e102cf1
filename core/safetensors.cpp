// core/safetensors.h.
#include "core/safetensors.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/fs.h"

namespace unidiff::safetensors {
namespace {

static_assert(std::endian::native == std::endian::little, "safetensors stores little-endian bytes");

constexpr uint64_t kMaxHeader = uint64_t{100} << 20;  // the Python package's own limit
constexpr int kMaxDepth = 64;

struct DtypeInfo {
  const char* name;
  torch::ScalarType type;
};
constexpr DtypeInfo kDtypes[] = {
    {"F64", torch::kFloat64}, {"F32", torch::kFloat32}, {"F16", torch::kFloat16}, {"BF16", torch::kBFloat16},
    {"I64", torch::kInt64},   {"I32", torch::kInt32},   {"I16", torch::kInt16},   {"I8", torch::kInt8},
    {"U8", torch::kUInt8},    {"BOOL", torch::kBool},
};

/// The format's entry for a tensor dtype, or nullptr.
const DtypeInfo* info_of(torch::ScalarType type) {
  for (const auto& d : kDtypes) {
    if (d.type == type) return &d;
  }
  return nullptr;
}

std::string known_dtypes() {
  std::string s;
  for (const auto& d : kDtypes) s += (s.empty() ? "" : ", ") + std::string(d.name);
  return s;
}

/// Nesting depth of the JSON text, counted over brackets outside strings (nlohmann's parser is
/// iterative, but a hostile header gains nothing from thousands of levels: refused before parsing).
int max_depth(std::string_view s) {
  int depth = 0, deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      deepest = std::max(deepest, ++depth);
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return deepest;
}

uint64_t read_u64_le(std::string_view bytes) {
  uint64_t v = 0;
  std::memcpy(&v, bytes.data(), sizeof(v));
  return v;
}

/// A non-negative integer of the header (JSON unsigned, or a signed value >= 0).
uint64_t as_count(const nlohmann::json& v, const std::string& what, const std::string& field,
                  const std::string& name) {
  UD_CHECK_INPUT(v.is_number_integer() && (v.is_number_unsigned() || v.get<int64_t>() >= 0), what, ": tensor '",
                 name, "' has a ", field, " entry that is not a non-negative integer: ", v.dump());
  return v.get<uint64_t>();
}

}  // namespace

torch::Tensor File::find(const std::string& name) const {
  for (const auto& [n, t] : tensors) {
    if (n == name) return t;
  }
  return {};
}

File parse(std::string_view bytes, const std::string& what) {
  UD_CHECK_INPUT(bytes.size() >= 8, what, ": ", bytes.size(), " bytes is too short for a safetensors file ",
                 "(an 8-byte header length comes first)");
  const uint64_t n = read_u64_le(bytes);
  UD_CHECK_INPUT(n <= kMaxHeader, what, ": header length ", n, " exceeds the 100 MiB limit (not a safetensors ",
                 "file, or a damaged one)");
  UD_CHECK_INPUT(n <= bytes.size() - 8, what, ": the header claims ", n, " bytes but the file has ",
                 bytes.size() - 8, " after the length (truncated?)");
  const std::string_view header = bytes.substr(8, n);
  UD_CHECK_INPUT(!header.empty() && header.front() == '{', what, ": the header is not a JSON object");
  UD_CHECK_INPUT(max_depth(header) <= kMaxDepth, what, ": the header nests deeper than ", kMaxDepth, " levels");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(header.begin(), header.end());
  } catch (const nlohmann::json::exception& e) {
    UD_FAIL_INPUT(what, ": the header is not valid JSON: ", e.what());
  }
  UD_CHECK_INPUT(j.is_object(), what, ": the header is not a JSON object");
  const uint64_t buffer = bytes.size() - 8 - n;
  const char* base = bytes.data() + 8 + n;

  File out;
  struct Entry {
    std::string name;
    torch::ScalarType type;
    std::vector<int64_t> shape;
    uint64_t begin, end;
  };
  std::vector<Entry> entries;
  for (const auto& [name, v] : j.items()) {
    if (name == "__metadata__") {
      UD_CHECK_INPUT(v.is_object(), what, ": __metadata__ is not an object");
      for (const auto& [k, s] : v.items()) {
        UD_CHECK_INPUT(s.is_string(), what, ": __metadata__ value of '", k, "' is not a string");
        out.metadata[k] = s.get<std::string>();
      }
      continue;
    }
    UD_CHECK_INPUT(v.is_object(), what, ": tensor '", name, "' is not described by an object");
    for (const char* key : {"dtype", "shape", "data_offsets"}) {
      UD_CHECK_INPUT(v.contains(key), what, ": tensor '", name, "' has no ", key);
    }
    for (const auto& [k, unused] : v.items()) {
      UD_CHECK_INPUT(k == "dtype" || k == "shape" || k == "data_offsets", what, ": tensor '", name,
                     "' has an unknown field '", k, "'");
    }
    Entry e;
    e.name = name;
    const auto& dt = v["dtype"];
    UD_CHECK_INPUT(dt.is_string(), what, ": tensor '", name, "' has a dtype that is not a string");
    const std::string dtype = dt.get<std::string>();
    const auto* info = std::find_if(std::begin(kDtypes), std::end(kDtypes),
                                    [&](const DtypeInfo& d) { return dtype == d.name; });
    UD_CHECK_INPUT(info != std::end(kDtypes), what, ": tensor '", name, "' has dtype '", dtype,
                   "', which unidiff does not read (valid: ", known_dtypes(), ")");
    e.type = info->type;
    const auto& shape = v["shape"];
    UD_CHECK_INPUT(shape.is_array() && shape.size() <= 16, what, ": tensor '", name,
                   "' has a shape that is not a list of at most 16 sizes");
    uint64_t numel = 1;
    for (const auto& d : shape) {
      const uint64_t size = as_count(d, what, "shape", name);
      UD_CHECK_INPUT(size <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) &&
                         (size == 0 || numel <= std::numeric_limits<uint64_t>::max() / size),
                     what, ": tensor '", name, "' has a shape whose element count overflows");
      numel *= size;
      e.shape.push_back(static_cast<int64_t>(size));
    }
    const auto& off = v["data_offsets"];
    UD_CHECK_INPUT(off.is_array() && off.size() == 2, what, ": tensor '", name,
                   "' has data_offsets that are not [begin, end]");
    e.begin = as_count(off[0], what, "data_offsets", name);
    e.end = as_count(off[1], what, "data_offsets", name);
    UD_CHECK_INPUT(e.begin <= e.end && e.end <= buffer, what, ": tensor '", name, "' has data_offsets [", e.begin,
                   ", ", e.end, "] outside the ", buffer, "-byte buffer after the header (truncated?)");
    const uint64_t item = torch::elementSize(e.type);
    UD_CHECK_INPUT(numel <= std::numeric_limits<uint64_t>::max() / item && e.end - e.begin == numel * item, what,
                   ": tensor '", name, "' spans ", e.end - e.begin, " bytes but its ", dtype, " shape ",
                   torch::IntArrayRef(e.shape), " needs ", numel * item);
    entries.push_back(std::move(e));
  }
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t covered = 0;
  for (const Entry& e : entries) {
    UD_CHECK_INPUT(e.begin >= covered, what, ": tensor '", e.name, "' overlaps the tensor before it (bytes ",
                   e.begin, ".. of a buffer filled to ", covered, ")");
    UD_CHECK_INPUT(e.begin == covered, what, ": the buffer has a hole of ", e.begin - covered,
                   " bytes before tensor '", e.name, "'");
    covered = e.end;
  }
  UD_CHECK_INPUT(covered == buffer, what, ": the buffer holds ", buffer - covered,
                 " bytes after its last tensor that no tensor describes");
  for (const Entry& e : entries) {
    torch::Tensor t = torch::empty(e.shape, torch::TensorOptions().dtype(e.type));
    if (e.end > e.begin) std::memcpy(t.data_ptr(), base + e.begin, e.end - e.begin);
    if (e.type == torch::kBool) {
      UD_CHECK_INPUT(t.view(torch::kUInt8).le(1).all().item<bool>(), what, ": bool tensor '", e.name,
                     "' holds bytes other than 0 and 1");
    }
    out.tensors.emplace_back(e.name, std::move(t));
  }
  return out;
}

File read(const std::filesystem::path& path) {
  std::error_code ec;
  const uintmax_t size = std::filesystem::file_size(path, ec);
  UD_CHECK_INPUT(!ec, "cannot read '", path.string(), "': ", ec.message());
  std::ifstream in(path, std::ios::binary);
  UD_CHECK_INPUT(in.good(), "cannot open '", path.string(), "'");
  std::string bytes(static_cast<size_t>(size), '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(size));
  UD_CHECK_INPUT(in.gcount() == static_cast<std::streamsize>(size), "reading '", path.string(), "' failed (",
                 in.gcount(), " of ", size, " bytes)");
  std::string what = "'";  // built step by step: GCC 12 warns falsely on "x" + string
  what += path.string();
  what += "'";
  return parse(bytes, what);
}

std::string serialize(const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::vector<std::pair<std::string, torch::Tensor>> sorted;
  for (const auto& [name, t] : tensors) {
    UD_CHECK_INPUT(name != "__metadata__" && !name.empty(), "a safetensors tensor cannot be called '", name, "'");
    UD_CHECK_INPUT(info_of(t.scalar_type()) != nullptr, "tensor '", name, "' has dtype ", t.scalar_type(),
                   ", which safetensors files here do not hold");
    sorted.emplace_back(name, t.detach().to(torch::kCPU).contiguous());
  }
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  for (size_t i = 1; i < sorted.size(); ++i) {
    UD_CHECK_INPUT(sorted[i].first != sorted[i - 1].first, "tensor '", sorted[i].first, "' is given twice");
  }
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  if (!metadata.empty()) j["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& [name, t] : sorted) {
    const DtypeInfo* info = info_of(t.scalar_type());
    const uint64_t size = static_cast<uint64_t>(t.numel()) * t.element_size();
    j[name] = {{"dtype", info->name}, {"shape", t.sizes().vec()}, {"data_offsets", {offset, offset + size}}};
    offset += size;
  }
  std::string header = j.dump();
  header.append((8 - header.size() % 8) % 8, ' ');
  const uint64_t n = header.size();
  std::string out(8 + header.size() + offset, '\0');
  std::memcpy(out.data(), &n, sizeof(n));
  std::memcpy(out.data() + 8, header.data(), header.size());
  char* at = out.data() + 8 + header.size();
  for (const auto& [name, t] : sorted) {
    const size_t size = static_cast<size_t>(t.numel()) * static_cast<size_t>(t.element_size());
    if (size > 0) std::memcpy(at, t.data_ptr(), size);
    at += size;
  }
  return out;
}

void write(const std::filesystem::path& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
           const std::map<std::string, std::string>& metadata) {
  fs::write_text_atomically(path, serialize(tensors, metadata));
}

}  // namespace unidiff::safetensors
