// Datasets in unidiff's HDF5 layout (DESIGN.md): `/data` uint8 [N, C, H, W] images mapped to
// [-1, 1], or float32/float64 [N, ...] used as is (as float32); optional `/labels` int64 [N] with
// the attribute `num_classes`. One file or several shard files read as one dataset.
// A dataset is held in memory (load) or read batch by batch from its files (open_streaming).
// Images stay uint8 until decode(): in memory, in the loader's queue and across the host-device
// copy. Streaming copies the rows of contiguous, unfiltered datasets (what the converters write)
// straight out of the memory-mapped file at the offset HDF5 reports, with no HDF5 call per batch;
// other layouts (chunked, compressed, big-endian) are read through HDF5 selections.
#pragma once

#include <torch/types.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace unidiff::data {

/// A batch of samples and where they came from.
struct Batch {
  torch::Tensor x;       ///< float32 [B, ...] (images in [-1, 1]); uint8 from get_raw()
  torch::Tensor labels;  ///< int64 [B], undefined when the dataset has no labels
  torch::Tensor index;   ///< int64 [B], the samples' global indices in the dataset
};

/// Expands a dataset spec into files: a path, a comma-separated list, or a glob pattern
/// ("shards/train-*.h5"). Throws InputError if nothing matches.
std::vector<std::filesystem::path> expand_paths(const std::string& spec);

class TensorDataset {
 public:
  /// Loads and validates: missing file, not HDF5, no /data, unsupported dtype, no samples,
  /// non-finite values, shards that disagree, bad labels each throw InputError naming the file.
  static TensorDataset load(const std::string& spec);
  /// Opens the files for streaming instead: get() reads the rows it needs from HDF5 (runs of
  /// consecutive indices in one read), so datasets larger than memory work. The same checks as
  /// load(), except that non-finite values are found when their batch is read (InputError then).
  /// Reads happen on one thread at a time (HDF5 serialises them anyway).
  static TensorDataset open_streaming(const std::string& spec);
  /// Wraps in-memory tensors (x: float32 [N, ...]; labels: int64 [N] or undefined).
  TensorDataset(torch::Tensor x, torch::Tensor labels = {}, int64_t num_classes = 0);

  int64_t size() const { return size_; }
  bool is_streaming() const { return shards_ != nullptr; }
  /// Shape of one sample, e.g. {2} or {1, 28, 28}.
  std::vector<int64_t> sample_shape() const;
  int64_t num_classes() const { return num_classes_; }
  /// Every label, int64 [N] (undefined without /labels).
  const torch::Tensor& labels() const { return labels_; }
  bool is_image() const { return is_image_; }
  /// Every sample (read in full when streaming).
  torch::Tensor all() const;

  /// The samples at `indices` (int64 [B]), decoded: float32, images in [-1, 1].
  Batch get(const torch::Tensor& indices) const;
  /// The samples as stored: uint8 images (a quarter of the bytes of float32, so they cross to
  /// the device before decode() turns them into floats there) or float32 vectors.
  Batch get_raw(const torch::Tensor& indices) const;
  /// uint8 images -> float32 in [-1, 1] (x / 127.5 - 1), on x's device; float32 passes through.
  static torch::Tensor decode(const torch::Tensor& x);

 private:
  struct Shards;
  TensorDataset() = default;
  torch::Tensor x_;       // as stored, uint8 images or float32 (in memory); undefined (streaming)
  std::shared_ptr<Shards> shards_;  // open files (streaming)
  int64_t size_ = 0;
  std::vector<int64_t> sample_shape_;
  torch::Tensor labels_;  // int64 [N] or undefined
  int64_t num_classes_ = 0;
  bool is_image_ = false;
};

/// Writes a dataset file in the layout above (float32 data or uint8 images), atomically.
/// `class_names` (optional) become the attribute `class_names` of /labels, one name per line;
/// `attrs` (optional) string attributes of `/` (e.g. how samples were drawn).
void write_dataset(const std::filesystem::path& path, const torch::Tensor& data,
                   const torch::Tensor& labels = {}, int64_t num_classes = 0,
                   const std::string& source = "",
                   const std::vector<std::string>& class_names = {},
                   const std::map<std::string, std::string>& attrs = {});

/// Writes the dataset as `shards` files of near-equal size (in order), each atomically:
/// shards = 1 writes `path`; otherwise `<stem>-00000-of-0000K.h5` beside it. Returns the paths;
/// logs progress per shard. A failure removes the shards already written by this call.
std::vector<std::filesystem::path> write_dataset_shards(const std::filesystem::path& path,
                                                        const torch::Tensor& data,
                                                        const torch::Tensor& labels,
                                                        int64_t num_classes,
                                                        const std::string& source, int64_t shards,
                                                        const std::vector<std::string>& class_names = {});

}  // namespace unidiff::data
