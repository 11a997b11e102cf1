// libpng writer and a small rasteriser for scatter plots and image grids (core/image.h).
#include "core/image.h"

#include <vector>

#include <png.h>

#include <cstdio>
#include <stdexcept>

#include "core/error.h"

namespace unidiff::image {

std::vector<uint8_t> encode_png(const torch::Tensor& rgb) {
  UD_ASSERT(rgb.dim() == 3 && rgb.size(2) == 3 && rgb.scalar_type() == torch::kUInt8,
            "a PNG takes uint8 [H, W, 3]");
  const torch::Tensor img = rgb.contiguous();
  std::vector<uint8_t> out;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!png || !info || setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    throw std::runtime_error("libpng failed encoding an image");
  }
  const auto h = static_cast<png_uint_32>(img.size(0)), w = static_cast<png_uint_32>(img.size(1));
  png_set_write_fn(
      png, &out,
      [](png_structp p, png_bytep data, png_size_t n) {
        auto* buf = static_cast<std::vector<uint8_t>*>(png_get_io_ptr(p));
        buf->insert(buf->end(), data, data + n);
      },
      nullptr);
  png_set_IHDR(png, info, w, h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  const uint8_t* data = img.data_ptr<uint8_t>();
  for (png_uint_32 y = 0; y < h; ++y) {
    png_write_row(png, const_cast<png_bytep>(data + static_cast<size_t>(y) * w * 3));
  }
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return out;
}

void write_png(const std::filesystem::path& path, const torch::Tensor& rgb) {
  const std::vector<uint8_t> bytes = encode_png(rgb);
  const std::filesystem::path tmp = path.string() + ".tmp";
  FILE* fp = std::fopen(tmp.c_str(), "wb");
  if (!fp) throw std::runtime_error("cannot write '" + tmp.string() + "'");
  const bool ok = std::fwrite(bytes.data(), 1, bytes.size(), fp) == bytes.size();
  if (std::fclose(fp) != 0 || !ok) {
    std::filesystem::remove(tmp);
    throw std::runtime_error("cannot finish '" + tmp.string() + "'");
  }
  std::filesystem::rename(tmp, path);
}

torch::Tensor line_plot(const std::vector<double>& ys, int64_t width, int64_t height) {
  torch::Tensor canvas = torch::full({height, width, 3}, 255, torch::kUInt8);
  if (ys.empty()) return canvas;
  double lo = ys[0], hi = ys[0];
  for (double y : ys) {
    if (!std::isfinite(y)) continue;
    lo = std::min(lo, y);
    hi = std::max(hi, y);
  }
  if (hi <= lo) hi = lo + 1;
  auto c = canvas.accessor<uint8_t, 3>();
  const int64_t margin = 8;
  const auto px = [&](size_t i) {
    return margin + static_cast<int64_t>(ys.size() > 1 ? static_cast<double>(i) / static_cast<double>(ys.size() - 1) *
                                                             static_cast<double>(width - 2 * margin - 1)
                                                       : 0.0);
  };
  const auto py = [&](double y) {
    return height - 1 - margin -
           static_cast<int64_t>((y - lo) / (hi - lo) * static_cast<double>(height - 2 * margin - 1));
  };
  const auto dot = [&](int64_t x, int64_t y) {
    for (int64_t dy = -1; dy <= 1; ++dy) {
      for (int64_t dx = -1; dx <= 1; ++dx) {
        const int64_t xx = x + dx, yy = y + dy;
        if (xx < 0 || yy < 0 || xx >= width || yy >= height) continue;
        c[yy][xx][0] = 30;
        c[yy][xx][1] = 90;
        c[yy][xx][2] = 200;
      }
    }
  };
  for (size_t i = 0; i < ys.size(); ++i) {
    if (!std::isfinite(ys[i])) continue;
    dot(px(i), py(ys[i]));
    if (i + 1 < ys.size() && std::isfinite(ys[i + 1])) {  // the segment to the next point
      const int64_t x0 = px(i), x1 = px(i + 1), y0 = py(ys[i]), y1 = py(ys[i + 1]);
      const int64_t n = std::max<int64_t>(1, std::max(std::abs(x1 - x0), std::abs(y1 - y0)));
      for (int64_t k = 0; k <= n; ++k) dot(x0 + (x1 - x0) * k / n, y0 + (y1 - y0) * k / n);
    }
  }
  return canvas;
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
