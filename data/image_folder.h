// Datasets from a folder of PNG/JPEG files: one class per sub-folder (sorted names give the labels
// 0..K-1) or, with no sub-folders, unlabelled images. Every image is decoded to uint8 [C, H, W]
// with C = 1 (grey: ITU-R BT.601 luma, as JPEG's Y) or 3 (RGB; grey replicated); alpha is
// composited onto black; 16-bit PNGs are scaled to 8 bits with rounding. Images must share one size unless
// `size` > 0, which resizes the shorter side to `size` (bilinear, antialiased) and centre-crops a
// size x size square.
#pragma once

#include <torch/types.h>

#include <filesystem>
#include <string>
#include <vector>

namespace unidiff::data {

struct ImageFolder {
  torch::Tensor images;                  ///< uint8 [N, C, H, W]
  torch::Tensor labels;                  ///< int64 [N], undefined without class folders
  std::vector<std::string> class_names;  ///< sub-folder names in label order
};

/// Reads every .png/.jpg/.jpeg (any case) under `dir`. Unreadable or undecodable files, an empty
/// folder, files beside class folders, and mismatched sizes throw InputError naming the file.
/// Logs progress every `progress_every` images (0: never).
ImageFolder read_image_folder(const std::filesystem::path& dir, int64_t channels, int64_t size,
                              int64_t progress_every = 1000);

/// Decodes one PNG or JPEG file (by its magic bytes) to uint8 [channels, H, W].
torch::Tensor read_image(const std::filesystem::path& path, int64_t channels);

/// Whether this build decodes JPEG (libjpeg found at configure time).
bool has_jpeg_support();

}  // namespace unidiff::data
