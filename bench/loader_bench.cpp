// Loader throughput: samples/s and MB/s of the prefetching loader (shuffled, sharded order,
// streaming from HDF5 or in memory) against the raw sequential read rate of the same bytes,
// measured in the same run with the page cache warm. Prints a Markdown table.
//   loader_bench [--gb=2.0] [--dir=/tmp] [--seconds=15] [--threads=1]
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "core/fs.h"
#include "core/h5.h"
#include "core/memory.h"
#include "data/dataset.h"
#include "data/fashion_mnist.h"
#include "data/loader.h"

namespace {

using Clock = std::chrono::steady_clock;
namespace d = unidiff::data;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

/// Raw rate through HDF5: the whole /data read sequentially in 64 MiB slabs.
double hdf5_mb_per_s(const std::string& spec) {
  double bytes = 0;
  const auto t0 = Clock::now();
  for (const auto& p : d::expand_paths(spec)) {
    const auto f = unidiff::h5::File::open_read(p);
    const auto info = unidiff::h5::dataset_info(f, "/data");
    int64_t row = 1;
    for (size_t i = 1; i < info.shape.size(); ++i) row *= info.shape[i];
    const int64_t step = std::max<int64_t>(1, (64 << 20) / row);
    for (int64_t s = 0; s < info.shape[0]; s += step) {
      const auto t = unidiff::h5::read_rows(f, "/data", s, std::min(step, info.shape[0] - s));
      bytes += static_cast<double>(t.numel() * t.element_size());
    }
  }
  return bytes / 1e6 / seconds_since(t0);
}

/// Raw rate of the operating system: /data's bytes read sequentially with pread() into one
/// reused 64 MiB buffer (no HDF5, no allocation), the fastest way to move them out of the cache.
double pread_mb_per_s(const std::string& spec) {
  std::vector<char> buffer(64 << 20);
  double bytes = 0;
  const auto t0 = Clock::now();
  for (const auto& p : d::expand_paths(spec)) {
    const auto extent = unidiff::h5::raw_extent(unidiff::h5::File::open_read(p), "/data");
    if (!extent) return 0;
    const int fd = ::open(p.c_str(), O_RDONLY);
    for (int64_t off = 0; off < extent->bytes;) {
      const auto n = static_cast<size_t>(std::min<int64_t>(buffer.size(), extent->bytes - off));
      const ssize_t got = ::pread(fd, buffer.data(), n, extent->offset + off);
      if (got <= 0) break;
      off += got;
      bytes += static_cast<double>(got);
    }
    ::close(fd);
  }
  return bytes / 1e6 / seconds_since(t0);
}

struct Rate {
  double samples_per_s, mb_per_s;
};

/// The loader over one epoch or `seconds`, whichever ends first; MB counts the stored bytes.
/// decode = false measures what a GPU run's host does (gather and queue; the decode then runs
/// on the device); decode = true adds the uint8 -> float32 decode on this CPU.
Rate loader_rate(const d::TensorDataset& ds, int64_t batch, double bytes_per_sample, double seconds,
                 bool decode) {
  d::LoaderOptions options;
  options.decode = decode;
  d::Loader loader(ds, d::ShardedSampler(ds.size(), batch, 1, 0, 1), options);
  loader.next();  // warm-up
  const auto t0 = Clock::now();
  int64_t n = 0;
  const int64_t batches = ds.size() / batch - 1;
  for (int64_t k = 0; k < batches && seconds_since(t0) < seconds; ++k) n += loader.next().x.size(0);
  const double s = seconds_since(t0);
  return {n / s, n * bytes_per_sample / 1e6 / s};
}

}  // namespace

int main(int argc, char** argv) {
  unidiff::memory::keep_freed_pages();
  double gb = 2.0, seconds = 15;
  std::string dir = "/tmp";
  for (int i = 1; i < argc; ++i) {
    if (!std::strncmp(argv[i], "--gb=", 5)) gb = std::atof(argv[i] + 5);
    else if (!std::strncmp(argv[i], "--dir=", 6)) dir = argv[i] + 6;
    else if (!std::strncmp(argv[i], "--seconds=", 10)) seconds = std::atof(argv[i] + 10);
  }
  int threads = 1;
  for (int i = 1; i < argc; ++i) {
    if (!std::strncmp(argv[i], "--threads=", 10)) threads = std::atoi(argv[i] + 10);
  }
  torch::set_num_threads(threads);  // the loader's copies and the CPU decode use these
  const auto work = std::filesystem::path(dir) / "unidiff-loader-bench";
  unidiff::fs::remove_tree(work);
  std::filesystem::create_directories(work);

  std::printf("| dataset | reader | samples/s | MB/s | raw MB/s (HDF5 / pread) | loader / best raw |\n"
              "|---|---|---|---|---|---|\n");
  // Fashion-MNIST, 784 bytes per sample.
  const auto fm = d::read_fashion_mnist(d::kFashionMnistDir, "train");
  d::write_dataset(work / "fm.h5", fm.images, fm.labels, 10);
  const std::string fm_spec = (work / "fm.h5").string();
  hdf5_mb_per_s(fm_spec);  // warm the page cache
  const double fm_h5 = hdf5_mb_per_s(fm_spec), fm_pread = pread_mb_per_s(fm_spec);
  const double fm_raw = std::max(fm_h5, fm_pread);
  for (const bool stream : {false, true}) {
    const auto ds = stream ? d::TensorDataset::open_streaming(fm_spec) : d::TensorDataset::load(fm_spec);
    for (const bool decode : {false, true}) {
      const Rate r = loader_rate(ds, 256, 784, seconds, decode);
      std::printf("| Fashion-MNIST 1x28x28 | %s%s | %.0f | %.1f | %.0f / %.0f | %.0f%% |\n",
                  stream ? "streaming" : "in memory", decode ? " + CPU decode" : "",
                  r.samples_per_s, r.mb_per_s, fm_h5, fm_pread, 100 * r.mb_per_s / fm_raw);
    }
  }
  // Synthetic 3x64x64 uint8, `gb` GB in 8 shards.
  const int64_t per = 3 * 64 * 64;
  const auto n = static_cast<int64_t>(gb * 1e9 / per);
  const int64_t shards = 8;
  for (int64_t k = 0; k < shards; ++k) {
    const int64_t rows = n * (k + 1) / shards - n * k / shards;
    char name[64];
    std::snprintf(name, sizeof(name), "syn-%05ld.h5", static_cast<long>(k));
    d::write_dataset(work / name, torch::randint(0, 256, {rows, 3, 64, 64}, torch::kUInt8));
  }
  const std::string syn_spec = (work / "syn-*.h5").string();
  hdf5_mb_per_s(syn_spec);  // warm the page cache
  const double syn_h5 = hdf5_mb_per_s(syn_spec), syn_pread = pread_mb_per_s(syn_spec);
  const double syn_raw = std::max(syn_h5, syn_pread);
  const auto syn = d::TensorDataset::open_streaming(syn_spec);
  for (const bool decode : {false, true}) {
    const Rate r = loader_rate(syn, 256, per, seconds, decode);
    std::printf("| synthetic 3x64x64, %.2f GB | streaming%s | %.0f | %.1f | %.0f / %.0f | %.0f%% |\n",
                n * per / 1e9, decode ? " + CPU decode" : "", r.samples_per_s, r.mb_per_s, syn_h5,
                syn_pread, 100 * r.mb_per_s / syn_raw);
  }
  unidiff::fs::remove_tree(work);
  return 0;
}
