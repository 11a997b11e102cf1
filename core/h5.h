// HDF5 tensor I/O behind small RAII types (HDF5 C API). Datasets hold plain arrays that h5py reads
// as they are. Not a general HDF5 binding: only what unidiff's files need (datasets of tensors,
// scalar attributes, groups made on demand).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace unidiff::h5 {

using hid = int64_t;  // hid_t, without pulling hdf5.h into every file

/// An open HDF5 file. Opening a missing or non-HDF5 file throws InputError naming the path.
class File {
 public:
  static File open_read(const std::filesystem::path& path);
  /// Creates (truncates) a file for writing.
  static File create(const std::filesystem::path& path);

  File(File&& other) noexcept;
  File& operator=(File&& other) noexcept;
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  ~File();

  const std::filesystem::path& path() const { return path_; }
  hid id() const { return id_; }
  /// Whether a link (dataset or group) with this absolute name exists, e.g. "/data".
  bool has(const std::string& name) const;
  void close();

 private:
  File(std::filesystem::path path, hid id) : path_(std::move(path)), id_(id) {}
  std::filesystem::path path_;
  hid id_ = -1;
};

/// Whether `path` is a readable HDF5 file.
bool is_hdf5(const std::filesystem::path& path);

/// Element type and shape of a dataset, read without loading it.
struct DatasetInfo {
  torch::ScalarType dtype = torch::kFloat32;  ///< the matching torch type
  bool supported = true;                      ///< false for HDF5 types unidiff cannot read
  std::string type_name;                      ///< human-readable HDF5 type (for messages)
  std::vector<int64_t> shape;
};
DatasetInfo dataset_info(const File& file, const std::string& name);

/// Writes a contiguous CPU tensor (uint8, int32, int64, float32, float64) as a dataset; parent
/// groups are created. `chunk_rows` > 0 chunks the first dimension in runs of that many rows.
void write_tensor(File& file, const std::string& name, const torch::Tensor& tensor,
                  int64_t chunk_rows = 0);
/// Reads a whole dataset into a CPU tensor of its own dtype.
torch::Tensor read_tensor(const File& file, const std::string& name);
/// Reads rows [start, start + count) of the first dimension.
torch::Tensor read_rows(const File& file, const std::string& name, int64_t start, int64_t count);

/// Reads the rows listed in `runs` (pairs of start, count along the first dimension; increasing,
/// not overlapping) with one HDF5 read of the union selection, concatenated in that order.
torch::Tensor read_row_runs(const File& file, const std::string& name,
                            const std::vector<std::pair<int64_t, int64_t>>& runs);

/// Where a dataset's elements lie in its file, when they can be read without HDF5: contiguous
/// layout, no filters, storage allocated, and the element type equal to the machine's native one.
/// Then the dataset's bytes are [offset, offset + bytes) of the file, row after row.
struct RawExtent {
  int64_t offset = 0;
  int64_t bytes = 0;
};
std::optional<RawExtent> raw_extent(const File& file, const std::string& name);

/// Scalar attributes on an object (a group or dataset; "/" is the file).
void write_attr(File& file, const std::string& object, const std::string& key, int64_t value);
void write_attr(File& file, const std::string& object, const std::string& key, double value);
void write_attr(File& file, const std::string& object, const std::string& key,
                const std::string& value);
std::optional<int64_t> read_attr_int(const File& file, const std::string& object,
                                     const std::string& key);
std::optional<double> read_attr_double(const File& file, const std::string& object,
                                       const std::string& key);
std::optional<std::string> read_attr_string(const File& file, const std::string& object,
                                            const std::string& key);

/// Names of the datasets under a group, recursively, as absolute paths, sorted.
std::vector<std::string> list_datasets(const File& file, const std::string& group = "/");
/// The names of the attributes of `object` (a group or dataset path), in creation-name order;
/// empty when the object does not exist.
std::vector<std::string> list_attrs(const File& file, const std::string& object);

/// Writes `path` through a temporary file in the same folder and an atomic rename, so a failure
/// midway never leaves a damaged file at `path` (an older file there stays intact).
void write_atomically(const std::filesystem::path& path, const std::function<void(File&)>& fill);

}  // namespace unidiff::h5
