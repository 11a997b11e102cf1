// PNG output: writing RGB images and rendering 2-D point clouds as scatter plots. For looking at
// results, not for data (datasets are HDF5).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <filesystem>
#include <vector>

namespace unidiff::image {

/// Writes uint8 [H, W, 3] (RGB) as a PNG, atomically (temporary file and rename).
void write_png(const std::filesystem::path& path, const torch::Tensor& rgb);
/// The PNG bytes of uint8 [H, W, 3] (RGB), in memory.
std::vector<uint8_t> encode_png(const torch::Tensor& rgb);
/// A curve through ys (evenly spaced in x, scaled to the canvas): uint8 [height, width, 3].
torch::Tensor line_plot(const std::vector<double>& ys, int64_t width = 512, int64_t height = 256);

/// Renders points [N, 2] (blue) over optional reference points [M, 2] (grey) on a square canvas
/// of `size` pixels whose view covers both sets with a margin. Returns uint8 [size, size, 3].
torch::Tensor scatter_plot(const torch::Tensor& points, const torch::Tensor& reference,
                           int64_t size = 512);

/// Tiles images [N, C, H, W] in [-1, 1] (C = 1 or 3) into a grid with `columns` columns and a
/// one-pixel border. Returns uint8 [rows * (H + 1) + 1, columns * (W + 1) + 1, 3].
torch::Tensor image_grid(const torch::Tensor& images, int64_t columns);

}  // namespace unidiff::image
