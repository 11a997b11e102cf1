#include "data/fashion_mnist.h"

#include <zlib.h>

#include <array>
#include <vector>

#include "core/error.h"

namespace unidiff::data {

torch::Tensor read_idx_gz(const std::filesystem::path& path) {
  UD_CHECK_INPUT(std::filesystem::is_regular_file(path), "file '", path.string(),
                 "' does not exist (install Debian's dataset-fashion-mnist package)");
  gzFile f = gzopen(path.c_str(), "rb");
  UD_CHECK_INPUT(f != nullptr, "cannot open '", path.string(), "'");
  auto read_exact = [&](void* buf, size_t n) {
    size_t done = 0;
    while (done < n) {
      const int got = gzread(f, static_cast<char*>(buf) + done, static_cast<unsigned>(std::min<size_t>(n - done, 1 << 30)));
      if (got <= 0) return false;
      done += static_cast<size_t>(got);
    }
    return true;
  };
  std::array<unsigned char, 4> magic{};
  if (!read_exact(magic.data(), 4) || magic[0] != 0 || magic[1] != 0 || magic[2] != 0x08 ||
      (magic[3] != 1 && magic[3] != 3)) {
    gzclose(f);
    UD_FAIL_INPUT("'", path.string(), "' is not a uint8 IDX file (bad magic number)");
  }
  std::vector<int64_t> shape;
  for (int i = 0; i < magic[3]; ++i) {
    std::array<unsigned char, 4> d{};
    if (!read_exact(d.data(), 4)) {
      gzclose(f);
      UD_FAIL_INPUT("'", path.string(), "' is truncated in its header");
    }
    shape.push_back((int64_t{d[0]} << 24) | (int64_t{d[1]} << 16) | (int64_t{d[2]} << 8) | d[3]);
  }
  torch::Tensor out = torch::empty(shape, torch::kUInt8);
  const bool ok = read_exact(out.data_ptr(), static_cast<size_t>(out.numel()));
  gzclose(f);
  UD_CHECK_INPUT(ok, "'", path.string(), "' is truncated: expected ", out.numel(), " data bytes");
  return out;
}

LabelledImages read_fashion_mnist(const std::filesystem::path& dir, const std::string& split,
                                  int64_t pad) {
  UD_CHECK_INPUT(split == "train" || split == "test", "unknown --split '", split,
                 "' (valid: train, test)");
  UD_CHECK_INPUT(pad >= 0 && pad <= 16, "--pad must be in [0, 16], got ", pad);
  const std::string prefix = split == "train" ? "train" : "t10k";
  LabelledImages out;
  const torch::Tensor images = read_idx_gz(dir / (prefix + "-images-idx3-ubyte.gz"));
  const torch::Tensor labels = read_idx_gz(dir / (prefix + "-labels-idx1-ubyte.gz"));
  UD_CHECK_INPUT(images.dim() == 3 && labels.dim() == 1 && images.size(0) == labels.size(0),
                 "Fashion-MNIST files in '", dir.string(), "' disagree: images ", images.sizes(),
                 ", labels ", labels.sizes());
  out.images = images.unsqueeze(1);
  if (pad > 0) out.images = torch::constant_pad_nd(out.images, {pad, pad, pad, pad}, 0);
  out.images = out.images.contiguous();
  out.labels = labels.to(torch::kInt64);
  return out;
}

}  // namespace unidiff::data
