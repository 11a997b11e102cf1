// Fashion-MNIST from Debian's `dataset-fashion-mnist` package: the original gzip-compressed IDX
// files (/usr/share/datasets/fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz).
#pragma once

#include <torch/types.h>

#include <filesystem>
#include <string>

namespace unidiff::data {

inline constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

struct LabelledImages {
  torch::Tensor images;  ///< uint8 [N, 1, H, W]
  torch::Tensor labels;  ///< int64 [N]
};

/// Reads split "train" (60,000) or "test" (10,000) from `dir`. `pad` pixels of zeros are added on
/// every side (2 gives the 32x32 layout of many papers). Missing or malformed files throw
/// InputError naming the file.
LabelledImages read_fashion_mnist(const std::filesystem::path& dir, const std::string& split,
                                  int64_t pad = 0);

/// Reads one gzip-compressed IDX file (magic 0x0801 for uint8 vectors, 0x0803 for uint8 images)
/// into a uint8 tensor of the file's shape.
torch::Tensor read_idx_gz(const std::filesystem::path& path);

}  // namespace unidiff::data
