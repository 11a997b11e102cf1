// data/image_folder.h: PNG through libpng's simplified API, JPEG through libjpeg.
#include "data/image_folder.h"

#include <png.h>
#ifdef UNIDIFF_HAVE_JPEG
#include <cstdio>
#include <csetjmp>
#include <jpeglib.h>
#endif

#include <algorithm>
#include <cctype>
#include <fstream>
#include <memory>

#include "core/error.h"
#include "core/log.h"
#include "core/progress.h"

namespace unidiff::data {
namespace {

namespace fs = std::filesystem;

bool is_image_file(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg";
}

std::vector<fs::path> sorted_entries(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

/// RGBA uint8 [H, W, 4] -> [C, H, W]: alpha composited onto black (rgb * a / 255, rounded), then
/// C = 1 takes the ITU-R BT.601 luma (299 R + 587 G + 114 B) / 1000, rounded, as JPEG's Y does.
torch::Tensor from_rgba(const torch::Tensor& rgba, int64_t channels) {
  torch::Tensor v = rgba.to(torch::kInt32);
  torch::Tensor rgb = (v.slice(2, 0, 3) * v.slice(2, 3, 4) + 127).div(255, "floor");
  if (channels == 1) {
    rgb = (rgb.select(2, 0) * 299 + rgb.select(2, 1) * 587 + rgb.select(2, 2) * 114 + 500)
              .div(1000, "floor")
              .unsqueeze(2);
  }
  return rgb.to(torch::kUInt8).permute({2, 0, 1}).contiguous();
}

/// What a decoder fills between setjmp and a possible longjmp lives on the heap, reached through a
/// pointer set before setjmp, so no local changed after setjmp is read after the jump.
struct DecodeState {
  std::string message = "out of memory";
  torch::Tensor pixels;
  std::vector<uint8_t*> rows;
};

torch::Tensor read_png(const fs::path& path, int64_t channels) {
  FILE* file = std::fopen(path.c_str(), "rb");
  UD_CHECK_INPUT(file != nullptr, "cannot open '", path.string(), "'");
  const auto state = std::make_unique<DecodeState>();
  png_structp png = png_create_read_struct(
      PNG_LIBPNG_VER_STRING, state.get(),
      [](png_structp p, png_const_charp msg) {
        static_cast<DecodeState*>(png_get_error_ptr(p))->message = msg;
        png_longjmp(p, 1);
      },
      [](png_structp, png_const_charp) {});
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (png == nullptr || info == nullptr || setjmp(png_jmpbuf(png)) != 0) {
    png_destroy_read_struct(&png, &info, nullptr);
    std::fclose(file);
    UD_FAIL_INPUT("cannot decode PNG '", path.string(), "': ", state->message);
  }
  png_init_io(png, file);
  png_read_info(png, info);
  // Every PNG kind to 8-bit RGBA: palettes and low bit depths expanded, tRNS to alpha, 16-bit
  // scaled (rounded) to 8, grey replicated to RGB, opaque alpha added where there is none.
  png_set_expand(png);
  png_set_scale_16(png);
  png_set_gray_to_rgb(png);
  png_set_add_alpha(png, 0xFF, PNG_FILLER_AFTER);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  const auto h = static_cast<int64_t>(png_get_image_height(png, info));
  const auto w = static_cast<int64_t>(png_get_image_width(png, info));
  if (png_get_rowbytes(png, info) != static_cast<size_t>(w * 4)) {
    state->message = "unexpected row layout after conversion to RGBA";
    png_longjmp(png, 1);
  }
  state->pixels = torch::empty({h, w, 4}, torch::kUInt8);
  state->rows.resize(static_cast<size_t>(h));
  for (int64_t y = 0; y < h; ++y) state->rows[y] = state->pixels.data_ptr<uint8_t>() + y * w * 4;
  png_read_image(png, state->rows.data());
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  std::fclose(file);
  return from_rgba(state->pixels, channels);
}

#ifdef UNIDIFF_HAVE_JPEG
struct JpegError {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

torch::Tensor read_jpeg(const fs::path& path, int64_t channels) {
  FILE* file = std::fopen(path.c_str(), "rb");
  UD_CHECK_INPUT(file != nullptr, "cannot open '", path.string(), "'");
  jpeg_decompress_struct info{};
  JpegError err{};
  info.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = [](j_common_ptr c) {
    auto* e = reinterpret_cast<JpegError*>(c->err);
    (*c->err->format_message)(c, e->message);
    std::longjmp(e->jump, 1);
  };
  err.mgr.output_message = [](j_common_ptr) {};  // warnings stay quiet
  const auto state = std::make_unique<DecodeState>();
  if (setjmp(err.jump) != 0) {
    jpeg_destroy_decompress(&info);
    std::fclose(file);
    UD_FAIL_INPUT("cannot decode JPEG '", path.string(), "': ", err.message);
  }
  jpeg_create_decompress(&info);
  jpeg_stdio_src(&info, file);
  jpeg_read_header(&info, TRUE);
  const bool cmyk = info.jpeg_color_space == JCS_CMYK || info.jpeg_color_space == JCS_YCCK;
  if (cmyk) {
    jpeg_destroy_decompress(&info);
    std::fclose(file);
    UD_FAIL_INPUT("JPEG '", path.string(), "' is CMYK; convert it to RGB first");
  }
  info.out_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_start_decompress(&info);
  state->pixels = torch::empty({static_cast<int64_t>(info.output_height),
                                static_cast<int64_t>(info.output_width), channels},
                               torch::kUInt8);
  const int64_t stride = static_cast<int64_t>(info.output_width) * channels;
  while (info.output_scanline < info.output_height) {
    JSAMPROW row =
        state->pixels.data_ptr<uint8_t>() + static_cast<int64_t>(info.output_scanline) * stride;
    jpeg_read_scanlines(&info, &row, 1);
  }
  jpeg_finish_decompress(&info);
  jpeg_destroy_decompress(&info);
  std::fclose(file);
  return state->pixels.permute({2, 0, 1}).contiguous();
}
#endif

/// Shorter side to `size` (bilinear, antialiased, on floats; rounded back to uint8), centre crop.
torch::Tensor resize_crop(const torch::Tensor& chw, int64_t size) {
  const int64_t h = chw.size(1), w = chw.size(2);
  const double scale = static_cast<double>(size) / static_cast<double>(std::min(h, w));
  const int64_t nh = std::max<int64_t>(size, std::llround(h * scale));
  const int64_t nw = std::max<int64_t>(size, std::llround(w * scale));
  torch::Tensor x = chw;
  if (nh != h || nw != w) {
    namespace F = torch::nn::functional;
    x = F::interpolate(chw.unsqueeze(0).to(torch::kFloat32),
                       F::InterpolateFuncOptions()
                           .size(std::vector<int64_t>{nh, nw})
                           .mode(torch::kBilinear)
                           .align_corners(false)
                           .antialias(true))
            .squeeze(0)
            .round()
            .clamp(0, 255)
            .to(torch::kUInt8);
  }
  const int64_t top = (nh - size) / 2, left = (nw - size) / 2;
  return x.slice(1, top, top + size).slice(2, left, left + size).contiguous();
}

}  // namespace

bool has_jpeg_support() {
#ifdef UNIDIFF_HAVE_JPEG
  return true;
#else
  return false;
#endif
}

torch::Tensor read_image(const fs::path& path, int64_t channels) {
  UD_CHECK_INPUT(channels == 1 || channels == 3, "--channels must be 1 or 3, got ", channels);
  unsigned char magic[8] = {};
  {
    std::ifstream in(path, std::ios::binary);
    UD_CHECK_INPUT(in.good(), "cannot open image '", path.string(), "'");
    in.read(reinterpret_cast<char*>(magic), sizeof(magic));
  }
  if (png_sig_cmp(magic, 0, 8) == 0) return read_png(path, channels);
  if (magic[0] == 0xFF && magic[1] == 0xD8 && magic[2] == 0xFF) {
#ifdef UNIDIFF_HAVE_JPEG
    return read_jpeg(path, channels);
#else
    UD_FAIL_INPUT("'", path.string(), "' is a JPEG, but this build has no JPEG support ",
                  "(install libjpeg-dev and reconfigure)");
#endif
  }
  UD_FAIL_INPUT("'", path.string(), "' is neither a PNG nor a JPEG file");
}

ImageFolder read_image_folder(const fs::path& dir, int64_t channels, int64_t size,
                              int64_t progress_every) {
  UD_CHECK_INPUT(fs::is_directory(dir), "image folder '", dir.string(), "' does not exist");
  UD_CHECK_INPUT(size >= 0, "--image_size must be >= 0, got ", size);
  ImageFolder out;
  // (file, label) in a fixed order: class folders sorted by name, files sorted within each.
  std::vector<std::pair<fs::path, int64_t>> files;
  std::vector<fs::path> loose;
  for (const auto& entry : sorted_entries(dir)) {
    if (fs::is_directory(entry)) {
      const auto label = static_cast<int64_t>(out.class_names.size());
      out.class_names.push_back(entry.filename().string());
      int64_t count = 0;
      for (const auto& f : sorted_entries(entry)) {
        if (fs::is_regular_file(f) && is_image_file(f)) {
          files.emplace_back(f, label);
          ++count;
        }
      }
      UD_CHECK_INPUT(count > 0, "class folder '", entry.string(), "' holds no .png/.jpg files");
    } else if (is_image_file(entry)) {
      loose.push_back(entry);
    }
  }
  UD_CHECK_INPUT(loose.empty() || out.class_names.empty(), "'", dir.string(),
                 "' mixes image files (e.g. '", loose.empty() ? "" : loose[0].filename().string(),
                 "') with class folders; put every image in a class folder, or use no folders");
  for (const auto& f : loose) files.emplace_back(f, -1);
  UD_CHECK_INPUT(!files.empty(), "'", dir.string(), "' holds no .png/.jpg/.jpeg files");

  std::vector<torch::Tensor> images;
  images.reserve(files.size());
  std::vector<int64_t> labels;
  Progress progress("data", "images", static_cast<int64_t>(files.size()));
  for (size_t i = 0; i < files.size(); ++i) {
    torch::Tensor img = read_image(files[i].first, channels);
    if (size > 0) img = resize_crop(img, size);
    if (!images.empty() && img.sizes() != images[0].sizes()) {
      UD_FAIL_INPUT("'", files[i].first.string(), "' is ", img.size(1), "x", img.size(2), " but '",
                    files[0].first.string(), "' is ", images[0].size(1), "x", images[0].size(2),
                    "; pass --image_size=S to resize and centre-crop every image to SxS");
    }
    images.push_back(img);
    labels.push_back(files[i].second);
    if (progress_every > 0 && ((i + 1) % static_cast<size_t>(progress_every) == 0 || i + 1 == files.size())) {
      progress.log(static_cast<double>(i + 1));
    }
  }
  out.images = torch::stack(images);
  if (!out.class_names.empty()) out.labels = torch::tensor(labels, torch::kInt64);
  return out;
}

}  // namespace unidiff::data
