// libpng writer and a small rasteriser for scatter plots and image grids (core/image.h).
#include "core/image.h"

#include <png.h>

#include <cstdio>
#include <stdexcept>

#include "core/error.h"

namespace unidiff::image {

void write_png(const std::filesystem::path& path, const torch::Tensor& rgb) {
  UD_ASSERT(rgb.dim() == 3 && rgb.size(2) == 3 && rgb.scalar_type() == torch::kUInt8,
            "write_png takes uint8 [H, W, 3]");
  const torch::Tensor img = rgb.contiguous();
  const std::filesystem::path tmp = path.string() + ".tmp";
  FILE* fp = std::fopen(tmp.c_str(), "wb");
  if (!fp) throw std::runtime_error("cannot write '" + tmp.string() + "'");
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!png || !info || setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    std::fclose(fp);
    std::filesystem::remove(tmp);
    throw std::runtime_error("libpng failed writing '" + path.string() + "'");
  }
  const auto h = static_cast<png_uint_32>(img.size(0)), w = static_cast<png_uint_32>(img.size(1));
  png_init_io(png, fp);
  png_set_IHDR(png, info, w, h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  const uint8_t* data = img.data_ptr<uint8_t>();
  for (png_uint_32 y = 0; y < h; ++y) {
    png_write_row(png, const_cast<png_bytep>(data + static_cast<size_t>(y) * w * 3));
  }
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  if (std::fclose(fp) != 0) throw std::runtime_error("cannot finish '" + tmp.string() + "'");
  std::filesystem::rename(tmp, path);
}

namespace {

void draw_points(torch::Tensor& canvas, const torch::Tensor& pts, double lo_x, double lo_y,
                 double scale, std::array<uint8_t, 3> color) {
  const int64_t size = canvas.size(0);
  auto c = canvas.accessor<uint8_t, 3>();
  const torch::Tensor p = pts.to(torch::kFloat64).contiguous();
  auto a = p.accessor<double, 2>();
  for (int64_t i = 0; i < p.size(0); ++i) {
    if (!std::isfinite(a[i][0]) || !std::isfinite(a[i][1])) continue;
    const auto px = static_cast<int64_t>((a[i][0] - lo_x) * scale);
    const auto py = size - 1 - static_cast<int64_t>((a[i][1] - lo_y) * scale);
    for (int64_t dy = -1; dy <= 1; ++dy) {
      for (int64_t dx = -1; dx <= 1; ++dx) {
        const int64_t x = px + dx, y = py + dy;
        if (x < 0 || y < 0 || x >= size || y >= size) continue;
        for (int k = 0; k < 3; ++k) c[y][x][k] = color[k];
      }
    }
  }
}

}  // namespace

torch::Tensor scatter_plot(const torch::Tensor& points, const torch::Tensor& reference,
                           int64_t size) {
  UD_ASSERT(points.dim() == 2 && points.size(1) == 2, "scatter_plot takes [N, 2]");
  torch::Tensor all = points.to(torch::kFloat64);
  if (reference.defined() && reference.numel() > 0) {
    all = torch::cat({all, reference.to(torch::kFloat64)});
  }
  all = all.index({torch::isfinite(all).all(1)});
  double lo_x = -1, hi_x = 1, lo_y = -1, hi_y = 1;
  if (all.size(0) > 0) {
    // Robust view: 0.5% and 99.5% quantiles, so a few outliers do not shrink the picture.
    const torch::Tensor q = torch::tensor({0.005, 0.995}, torch::kFloat64);
    const torch::Tensor qx = torch::quantile(all.select(1, 0), q);
    const torch::Tensor qy = torch::quantile(all.select(1, 1), q);
    lo_x = qx[0].item<double>(), hi_x = qx[1].item<double>();
    lo_y = qy[0].item<double>(), hi_y = qy[1].item<double>();
  }
  const double cx = (lo_x + hi_x) / 2, cy = (lo_y + hi_y) / 2;
  const double half = 0.55 * std::max({hi_x - lo_x, hi_y - lo_y, 1e-6});
  const double scale = static_cast<double>(size) / (2 * half);
  torch::Tensor canvas = torch::full({size, size, 3}, 255, torch::kUInt8);
  if (reference.defined() && reference.numel() > 0) {
    draw_points(canvas, reference, cx - half, cy - half, scale, {190, 190, 190});
  }
  draw_points(canvas, points, cx - half, cy - half, scale, {31, 90, 180});
  return canvas;
}

torch::Tensor image_grid(const torch::Tensor& images, int64_t columns) {
  UD_ASSERT(images.dim() == 4 && (images.size(1) == 1 || images.size(1) == 3),
            "image_grid takes [N, 1|3, H, W]");
  const int64_t n = images.size(0), h = images.size(2), w = images.size(3);
  const int64_t cols = std::max<int64_t>(1, std::min(columns, n));
  const int64_t rows = (n + cols - 1) / cols;
  torch::Tensor rgb = ((images.to(torch::kFloat32).clamp(-1, 1) + 1) * 127.5).round().to(torch::kUInt8);
  if (rgb.size(1) == 1) rgb = rgb.expand({n, 3, h, w});
  rgb = rgb.permute({0, 2, 3, 1});  // [N, H, W, 3]
  torch::Tensor grid = torch::full({rows * (h + 1) + 1, cols * (w + 1) + 1, 3}, 40, torch::kUInt8);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = i / cols, c = i % cols;
    grid.slice(0, 1 + r * (h + 1), 1 + r * (h + 1) + h).slice(1, 1 + c * (w + 1), 1 + c * (w + 1) + w).copy_(rgb[i]);
  }
  return grid;
}

}  // namespace unidiff::image
