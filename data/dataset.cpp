// Loading and validating HDF5 datasets (data/dataset.h).
#include "data/dataset.h"

#include <tuple>

#include <glob.h>

#include <algorithm>
#include <cstring>
#include <sstream>

#include <ATen/Parallel.h>

#include "core/error.h"
#include "core/fs.h"
#include "core/h5.h"
#include "core/log.h"

namespace unidiff::data {

std::vector<std::filesystem::path> expand_paths(const std::string& spec) {
  UD_CHECK_INPUT(!spec.empty(), "no dataset given (--data is empty)");
  std::vector<std::filesystem::path> out;
  std::stringstream ss(spec);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    if (item.find_first_of("*?[") == std::string::npos) {
      out.emplace_back(item);
      continue;
    }
    glob_t g{};
    const int rc = ::glob(item.c_str(), 0, nullptr, &g);
    if (rc == 0) {
      for (size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
    }
    globfree(&g);
    UD_CHECK_INPUT(rc == 0, "no file matches the dataset pattern '", item, "'");
  }
  UD_CHECK_INPUT(!out.empty(), "no dataset files in '", spec, "'");
  return out;
}

namespace {

struct Part {
  torch::Tensor x;
  torch::Tensor labels;
  int64_t num_classes = 0;
  bool is_image = false;
};

/// The layout of /data (dtype, [N, ...], images [N, C, H, W]), checked; InputError naming the file.
h5::DatasetInfo check_data(const h5::File& file, const std::filesystem::path& path) {
  UD_CHECK_INPUT(file.has("/data"), "'", path.string(),
                 "' has no /data dataset (expected uint8 [N, C, H, W] or float32 [N, ...])");
  const h5::DatasetInfo info = h5::dataset_info(file, "/data");
  UD_CHECK_INPUT(info.supported && (info.dtype == torch::kUInt8 || info.dtype == torch::kFloat32 ||
                                    info.dtype == torch::kFloat64),
                 "'", path.string(), "' /data has unsupported type ", info.type_name,
                 " (expected uint8 images or float32)");
  UD_CHECK_INPUT(info.shape.size() >= 2, "'", path.string(), "' /data must be [N, ...] with at ",
                 "least 2 dimensions, got ", info.shape.size());
  UD_CHECK_INPUT(info.shape[0] > 0, "'", path.string(), "' /data holds no samples");
  for (size_t d = 1; d < info.shape.size(); ++d) {
    // A sample of no values (found by the dataset fuzzer: rows of 0 bytes).
    UD_CHECK_INPUT(info.shape[d] > 0, "'", path.string(), "' /data has samples of no values (dimension ", d,
                   " of its shape is 0)");
  }
  UD_CHECK_INPUT(info.dtype != torch::kUInt8 || info.shape.size() == 4, "'", path.string(),
                 "' uint8 /data must be images [N, C, H, W], got ", info.shape.size(), " dims");
  return info;
}

/// /labels of a file with n samples, checked (integer type, [n], every label in [0, num_classes)),
/// with num_classes (the attribute, else the largest label + 1); undefined labels when there are none.
std::pair<torch::Tensor, int64_t> read_labels(const h5::File& file, const std::filesystem::path& path, int64_t n) {
  if (!file.has("/labels")) return {torch::Tensor(), 0};
  const h5::DatasetInfo li = h5::dataset_info(file, "/labels");
  UD_CHECK_INPUT(li.supported && (li.dtype == torch::kInt64 || li.dtype == torch::kInt32 ||
                                  li.dtype == torch::kUInt8),
                 "'", path.string(), "' /labels has type ", li.type_name, " (expected int64)");
  UD_CHECK_INPUT(li.shape.size() == 1 && li.shape[0] == n, "'", path.string(),
                 "' /labels must be [N] with N = ", n, " like /data");
  const torch::Tensor labels = h5::read_tensor(file, "/labels").to(torch::kInt64);
  const auto nc = h5::read_attr_int(file, "/labels", "num_classes");
  const int64_t lo = labels.min().item<int64_t>(), hi = labels.max().item<int64_t>();
  // Without the attribute, the largest label + 1 (a label of 2^63 - 1 would overflow: the dataset
  // fuzzer's find; anything past the bound below is refused the same way).
  const int64_t num_classes = nc ? *nc : std::min<int64_t>(hi, 1000000) + 1;
  // Classes size embeddings and per-class tables: an attribute of 10^7 in a small file is refused.
  UD_CHECK_INPUT(lo >= 0, "'", path.string(), "' /labels range [", lo, ", ", hi, "] holds negative labels");
  UD_CHECK_INPUT(num_classes >= 1 && num_classes <= 1000000, "'", path.string(), "' /labels ",
                 nc ? "attribute num_classes = " : "largest label + 1 = ", num_classes,
                 " is out of range (1 to 1,000,000)");
  UD_CHECK_INPUT(lo >= 0 && hi < num_classes, "'", path.string(), "' /labels range [", lo,
                 ", ", hi, "] does not fit num_classes = ", num_classes);
  return {labels, num_classes};
}

Part load_file(const std::filesystem::path& path) {
  const h5::File file = h5::File::open_read(path);
  const h5::DatasetInfo info = check_data(file, path);
  Part part;
  torch::Tensor raw = h5::read_tensor(file, "/data");
  if (info.dtype == torch::kUInt8) {
    part.x = raw;  // decoded per batch (TensorDataset::decode)
    part.is_image = true;
  } else {
    part.x = raw.to(torch::kFloat32);
    const torch::Tensor bad = ~torch::isfinite(part.x).reshape({part.x.size(0), -1}).all(1);
    const int64_t n_bad = bad.sum().item<int64_t>();
    UD_CHECK_INPUT(n_bad == 0, "'", path.string(), "' /data has non-finite values (NaN or Inf) in ",
                   n_bad, " samples, the first at index ", bad.nonzero()[0][0].item<int64_t>());
  }
  std::tie(part.labels, part.num_classes) = read_labels(file, path, info.shape[0]);
  return part;
}

/// load_file, with HDF5 read failures (a truncated or damaged file) reported as bad input.
Part load_checked(const std::filesystem::path& path) {
  try {
    return load_file(path);
  } catch (const InputError&) {
    throw;
  } catch (const std::exception& e) {
    UD_FAIL_INPUT("'", path.string(), "' is damaged or truncated: ", e.what());
  }
}

}  // namespace

TensorDataset TensorDataset::load(const std::string& spec) {
  const auto paths = expand_paths(spec);
  std::vector<torch::Tensor> xs, ls;
  int64_t num_classes = 0;
  bool is_image = false;
  for (size_t i = 0; i < paths.size(); ++i) {
    Part p = load_checked(paths[i]);
    if (i > 0) {
      UD_CHECK_INPUT(p.x.sizes().slice(1) == xs[0].sizes().slice(1), "shard '", paths[i].string(),
                     "' has samples of shape ", p.x.sizes().slice(1), " but '", paths[0].string(),
                     "' has ", xs[0].sizes().slice(1));
      UD_CHECK_INPUT(p.is_image == is_image && p.labels.defined() == !ls.empty(), "shard '",
                     paths[i].string(), "' differs from '", paths[0].string(),
                     "' in dtype or in having /labels");
    }
    is_image = p.is_image;
    num_classes = std::max(num_classes, p.num_classes);
    xs.push_back(p.x);
    if (p.labels.defined()) ls.push_back(p.labels);
  }
  TensorDataset ds;
  ds.x_ = xs.size() == 1 ? xs[0] : torch::cat(xs);
  ds.labels_ = ls.empty() ? torch::Tensor() : (ls.size() == 1 ? ls[0] : torch::cat(ls));
  ds.num_classes_ = num_classes;
  ds.is_image_ = is_image;
  ds.size_ = ds.x_.size(0);
  ds.sample_shape_.assign(ds.x_.sizes().begin() + 1, ds.x_.sizes().end());
  return ds;
}

TensorDataset::TensorDataset(torch::Tensor x, torch::Tensor labels, int64_t num_classes)
    : x_(std::move(x)), labels_(std::move(labels)), num_classes_(num_classes) {
  UD_ASSERT(x_.dim() >= 2 && x_.scalar_type() == torch::kFloat32, "x must be float32 [N, ...]");
  UD_ASSERT(!labels_.defined() || labels_.size(0) == x_.size(0), "labels must be [N]");
  size_ = x_.size(0);
  sample_shape_.assign(x_.sizes().begin() + 1, x_.sizes().end());
}

/// Open shard files of a streaming dataset, with their first global index.
struct TensorDataset::Shards {
  std::vector<h5::File> files;
  std::vector<int64_t> begin;  // global index of each file's row 0; begin.back() = N
  std::vector<std::filesystem::path> paths;
  std::vector<fs::FileStamp> stamps;  // each file as it was opened: checked around every read
  // Per file, the mapped file and the byte offset of /data when its rows can be read directly.
  std::vector<std::unique_ptr<fs::MappedFile>> direct;
  std::vector<int64_t> offsets;
  int64_t row_bytes = 0;  // bytes of one stored row (direct reads)
};

TensorDataset TensorDataset::open_streaming(const std::string& spec) {
  TensorDataset ds;
  ds.shards_ = std::make_shared<Shards>();
  std::vector<torch::Tensor> labels;
  int64_t total = 0;
  for (const auto& path : expand_paths(spec)) {
    const fs::FileStamp stamp = fs::stamp_of(path);
    h5::File f = h5::File::open_read(path);
    const h5::DatasetInfo info = check_data(f, path);
    const bool image = info.dtype == torch::kUInt8;
    const std::vector<int64_t> shape(info.shape.begin() + 1, info.shape.end());
    if (ds.shards_->files.empty()) {
      ds.sample_shape_ = shape;
      ds.is_image_ = image;
    }
    UD_CHECK_INPUT(shape == ds.sample_shape_ && image == ds.is_image_, "shard '", path.string(),
                   "' differs from '", ds.shards_->paths[0].string(), "' in sample shape or dtype");
    const auto [l, num_classes] = read_labels(f, path, info.shape[0]);
    if (l.defined()) {
      ds.num_classes_ = std::max(ds.num_classes_, num_classes);
      labels.push_back(l);
    }
    UD_CHECK_INPUT(labels.empty() || labels.size() == ds.shards_->files.size() + 1, "shard '",
                   path.string(), "' differs from the others in having /labels");
    int64_t row_bytes = static_cast<int64_t>(torch::elementSize(info.dtype));
    for (const int64_t d : shape) row_bytes *= d;
    ds.shards_->row_bytes = row_bytes;
    // Direct reads when the rows are plain bytes in the file (uint8 or float32, contiguous).
    const auto extent = info.dtype == torch::kFloat64 ? std::nullopt : h5::raw_extent(f, "/data");
    std::unique_ptr<fs::MappedFile> map;
    if (extent) {
      UD_CHECK_INPUT(extent->bytes == row_bytes * info.shape[0], "'", path.string(),
                     "' /data stores ", extent->bytes, " bytes for ", info.shape[0],
                     " rows of ", row_bytes);
      map = std::make_unique<fs::MappedFile>(path);
      UD_CHECK_INPUT(map->size() >= extent->offset + extent->bytes, "'", path.string(),
                     "' is truncated: /data needs bytes up to ", extent->offset + extent->bytes,
                     " but the file has ", map->size());
    }
    ds.shards_->offsets.push_back(extent ? extent->offset : -1);
    ds.shards_->direct.push_back(std::move(map));
    ds.shards_->begin.push_back(total);
    total += info.shape[0];
    ds.shards_->paths.push_back(path);
    ds.shards_->stamps.push_back(stamp);
    ds.shards_->files.push_back(std::move(f));
  }
  ds.shards_->begin.push_back(total);
  ds.size_ = total;
  if (!labels.empty()) ds.labels_ = torch::cat(labels);
  return ds;
}

std::vector<int64_t> TensorDataset::sample_shape() const { return sample_shape_; }

torch::Tensor TensorDataset::all() const {
  if (!is_streaming()) return decode(x_);
  return get(torch::arange(size_, torch::kInt64)).x;
}

torch::Tensor TensorDataset::decode(const torch::Tensor& x) {
  if (x.scalar_type() != torch::kUInt8) return x;
  return x.to(torch::kFloat32).div_(127.5).sub_(1.0);
}

Batch TensorDataset::get(const torch::Tensor& indices) const {
  Batch b = get_raw(indices);
  b.x = decode(b.x);
  return b;
}

Batch TensorDataset::get_raw(const torch::Tensor& indices) const {
  Batch b;
  b.index = indices.to(torch::kCPU, torch::kInt64).contiguous();
  if (labels_.defined()) b.labels = labels_.index_select(0, b.index);
  if (!is_streaming()) {
    // A row copy per sample on LibTorch's threads (index_select costs 2x more on small rows).
    const int64_t n = b.index.size(0);
    const int64_t* idx = b.index.data_ptr<int64_t>();
    for (int64_t r = 0; r < n; ++r) UD_ASSERT(idx[r] >= 0 && idx[r] < size_, "index ", idx[r], " out of range");
    std::vector<int64_t> shape{n};
    shape.insert(shape.end(), sample_shape_.begin(), sample_shape_.end());
    b.x = torch::empty(shape, x_.options());
    const int64_t row = x_.numel() / std::max<int64_t>(1, size_) * x_.element_size();
    const auto* src = static_cast<const uint8_t*>(x_.data_ptr());
    auto* dst = static_cast<uint8_t*>(b.x.data_ptr());
    at::parallel_for(0, n, 64, [&](int64_t lo, int64_t hi) {
      for (int64_t r = lo; r < hi; ++r) {
        std::memcpy(dst + r * row, src + idx[r] * row, static_cast<size_t>(row));
      }
    });
    return b;
  }
  const Shards& sh = *shards_;
  const int64_t n = b.index.size(0);
  const int64_t* idx = b.index.data_ptr<int64_t>();
  std::vector<int64_t> out_shape{n};
  out_shape.insert(out_shape.end(), sample_shape_.begin(), sample_shape_.end());
  const torch::ScalarType out_dtype = is_image_ ? torch::kUInt8 : torch::kFloat32;
  torch::Tensor out = torch::empty(out_shape, out_dtype);
  auto* dst = static_cast<uint8_t*>(out.data_ptr());
  const int64_t out_row = n > 0 ? out.numel() / n * out.element_size() : 0;
  const auto& begin = sh.begin;
  const auto shard_of = [&](int64_t i) {
    UD_ASSERT(i >= 0 && i < size_, "index ", i, " out of range");
    return static_cast<size_t>(std::upper_bound(begin.begin(), begin.end(), i) - begin.begin() - 1);
  };
  // Rows of plain shards are copied straight from the mapped file in the caller's order; the
  // others are collected per shard and read with one HDF5 selection each.
  // The copies run on LibTorch's intra-op threads (one copy stream cannot drain the page cache).
  std::vector<int64_t> via_hdf5;
  std::vector<size_t> shard(static_cast<size_t>(n), 0);
  const bool one_file = begin.size() == 2;
  for (int64_t r = 0; r < n; ++r) {
    if (one_file) UD_ASSERT(idx[r] >= 0 && idx[r] < size_, "index ", idx[r], " out of range");
    else shard[r] = shard_of(idx[r]);
    if (!sh.direct[shard[r]]) via_hdf5.push_back(r);
  }
  // The files read must be as they were opened, before (a truncated mapping would raise SIGBUS)
  // and after the copies (a file rewritten in place while its rows were copied).
  std::vector<size_t> touched(shard.begin(), shard.end());
  std::sort(touched.begin(), touched.end());
  touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
  const auto check_unchanged = [&] {
    for (const size_t k : touched) {
      const std::string change = fs::stamp_change(sh.paths[k], sh.stamps[k]);
      UD_CHECK_INPUT(change.empty(), "'", sh.paths[k].string(), "' changed while the run was reading it (",
                     change, "): a dataset must stay as it is for the whole run");
    }
  };
  check_unchanged();
  at::parallel_for(0, n, 32, [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const size_t k = shard[r];
      if (!sh.direct[k]) continue;
      std::memcpy(dst + r * out_row,
                  sh.direct[k]->data() + sh.offsets[k] + (idx[r] - begin[k]) * sh.row_bytes,
                  static_cast<size_t>(sh.row_bytes));
    }
  });
  if (!via_hdf5.empty()) {
    std::sort(via_hdf5.begin(), via_hdf5.end(), [&](int64_t a, int64_t c) { return idx[a] < idx[c]; });
    for (size_t i = 0; i < via_hdf5.size();) {
      const size_t k = shard_of(idx[via_hdf5[i]]);
      // Runs of consecutive rows of shard k; a repeated index starts the next read.
      std::vector<std::pair<int64_t, int64_t>> runs;
      size_t j = i;
      for (; j < via_hdf5.size() && idx[via_hdf5[j]] < begin[k + 1]; ++j) {
        const int64_t row = idx[via_hdf5[j]] - begin[k];
        if (!runs.empty() && row == runs.back().first + runs.back().second) ++runs.back().second;
        else if (!runs.empty() && row < runs.back().first + runs.back().second) break;
        else runs.emplace_back(row, 1);
      }
      torch::Tensor rows;
      try {
        rows = h5::read_row_runs(sh.files[k], "/data", runs).to(out_dtype).contiguous();
      } catch (const InputError&) {
        throw;
      } catch (const std::exception& e) {
        UD_FAIL_INPUT("'", sh.paths[k].string(), "' is damaged or truncated: ", e.what());
      }
      const auto* src = static_cast<const uint8_t*>(rows.data_ptr());
      for (size_t q = i; q < j; ++q) {
        std::memcpy(dst + via_hdf5[q] * out_row, src + static_cast<int64_t>(q - i) * out_row,
                    static_cast<size_t>(out_row));
      }
      i = j;
    }
  }
  check_unchanged();
  if (!is_image_) {
    const torch::Tensor bad = ~torch::isfinite(out).reshape({n, -1}).all(1);
    if (bad.any().item<bool>()) {
      const int64_t first = idx[bad.nonzero()[0][0].item<int64_t>()];
      const size_t k = shard_of(first);
      UD_FAIL_INPUT("'", sh.paths[k].string(), "' /data has non-finite values (NaN or Inf) in row ",
                    first - begin[k]);
    }
  }
  b.x = out;
  return b;
}

void write_dataset(const std::filesystem::path& path, const torch::Tensor& data,
                   const torch::Tensor& labels, int64_t num_classes, const std::string& source,
                   const std::vector<std::string>& class_names,
                   const std::map<std::string, std::string>& attrs) {
  UD_ASSERT(data.scalar_type() == torch::kFloat32 || data.scalar_type() == torch::kUInt8,
            "dataset data must be float32 or uint8");
  const std::filesystem::path parent = path.parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent);
  h5::write_atomically(path, [&](h5::File& f) {
    // Contiguous layout: a row (or a run of rows) is read with exactly its own bytes, whereas
    // chunks would make a shuffled loader read a whole chunk for every sample it needs.
    h5::write_tensor(f, "/data", data);
    if (labels.defined()) {
      h5::write_tensor(f, "/labels", labels.to(torch::kInt64));
      h5::write_attr(f, "/labels", "num_classes", num_classes);
      if (!class_names.empty()) {
        std::string joined;
        for (const auto& n : class_names) joined += (joined.empty() ? "" : "\n") + n;
        h5::write_attr(f, "/labels", "class_names", joined);
      }
    }
    if (!source.empty()) h5::write_attr(f, "/", "source", source);
    for (const auto& [k, v] : attrs) h5::write_attr(f, "/", k, v);
  });
}

std::vector<std::filesystem::path> write_dataset_shards(const std::filesystem::path& path,
                                                        const torch::Tensor& data,
                                                        const torch::Tensor& labels,
                                                        int64_t num_classes,
                                                        const std::string& source, int64_t shards,
                                                        const std::vector<std::string>& class_names) {
  const int64_t n = data.size(0);
  UD_CHECK_INPUT(shards >= 1 && shards <= n, "--shards must be in [1, ", n, "], got ", shards);
  std::vector<std::filesystem::path> paths;
  if (shards == 1) {
    write_dataset(path, data, labels, num_classes, source, class_names);
    return {path};
  }
  char suffix[64];
  try {
    for (int64_t k = 0; k < shards; ++k) {
      const int64_t begin = n * k / shards, end = n * (k + 1) / shards;
      std::snprintf(suffix, sizeof(suffix), "-%05ld-of-%05ld.h5", static_cast<long>(k),
                    static_cast<long>(shards));
      const std::filesystem::path p = path.parent_path() / (path.stem().string() + suffix);
      write_dataset(p, data.slice(0, begin, end),
                    labels.defined() ? labels.slice(0, begin, end) : torch::Tensor(), num_classes,
                    source, class_names);
      paths.push_back(p);
      log::info("data", detail::str_cat("shard ", k + 1, "/", shards, ": ", end - begin,
                                        " samples -> ", p.string()));
    }
  } catch (...) {
    for (const auto& p : paths) std::filesystem::remove(p);
    throw;
  }
  return paths;
}

}  // namespace unidiff::data
