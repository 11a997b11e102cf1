// Sharded checkpoints (DESIGN.md). A checkpoint is RUN_DIR/checkpoints/step-NNNNNNNNN/ holding one
// HDF5 shard per rank (`shard-0000r.h5`) and `manifest.h5`, written last by rank 0: every
// tensor's global shape and dtype and which shard holds which flat range of it, the world size,
// the step, scalar attributes (config hash, loader position, ...), and each shard's size and
// CRC-32. Then rank 0 moves the pointer file `checkpoints/latest` (the directory's name) by an
// atomic rename after fsyncs. A crash at any point leaves the previous checkpoint complete and
// `latest` pointing at it; a directory without a valid manifest is ignored.
//
// Tensors are flattened: a rank contributes pieces [start, start + count) of a tensor's flat
// elements, so a tensor sharded by W ranks (ZeRO-1 optimizer state) is read back whole or in any
// other slicing by W' ranks. Replicated tensors are written once, by rank 0. Every piece is a
// plain HDF5 dataset `/<name>#<start>` of its shard, readable with h5py.
#pragma once

#include <torch/types.h>

#include <array>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/h5.h"
#include "dist/communicator.h"

namespace unidiff::dist {

inline constexpr const char* kCheckpointFormat = "unidiff-checkpoint-1";

class CheckpointWriter {
 public:
  /// Collective over `comm`'s ranks: rank 0 prepares RUN_DIR/checkpoints/step-N/ (removing a
  /// leftover of an interrupted save of the same step).
  CheckpointWriter(Communicator& comm, const std::filesystem::path& run_dir, int64_t step);

  /// A tensor every rank holds the same copy of: written by rank 0 only.
  void add_replicated(const std::string& name, const torch::Tensor& tensor);
  /// This rank's piece: flat elements [start, start + data.numel()) of the tensor `name` of
  /// `shape` (data flat or not; dtype of the tensor).
  void add_piece(const std::string& name, at::IntArrayRef shape, int64_t start,
                 const torch::Tensor& data);
  /// Scalar attributes of the manifest (rank 0's values are recorded).
  void set_attr(const std::string& key, int64_t value);
  void set_attr(const std::string& key, double value);
  void set_attr(const std::string& key, const std::string& value);

  /// Collective: shards, manifest, `latest`; then keeps the newest `keep` complete checkpoints
  /// (0 = all). Returns the checkpoint directory.
  std::filesystem::path commit(int keep);

 private:
  struct Piece {
    std::string name;
    std::vector<int64_t> shape;
    torch::ScalarType dtype;
    int64_t start;
    torch::Tensor data;  // flat, contiguous, CPU
  };
  Communicator& comm_;
  std::filesystem::path dir_;
  int64_t step_;
  std::vector<Piece> pieces_;
  std::map<std::string, int64_t> ints_;
  std::map<std::string, double> doubles_;
  std::map<std::string, std::string> strings_;
};

class CheckpointReader {
 public:
  /// Opens and verifies a checkpoint directory: the manifest, every shard's presence, size and
  /// CRC-32. A missing, truncated or corrupted file throws InputError naming it.
  explicit CheckpointReader(const std::filesystem::path& dir);

  /// The checkpoint to resume from in `run_dir`, opened and verified: `latest` if it verifies,
  /// else the newest complete step-* directory (saying so in a warning), else nullopt.
  static std::optional<CheckpointReader> find_latest(const std::filesystem::path& run_dir);

  const std::filesystem::path& dir() const { return dir_; }
  int64_t step() const { return step_; }
  int world_size() const { return world_size_; }
  bool has(const std::string& name) const { return tensors_.count(name) > 0; }
  std::vector<int64_t> shape(const std::string& name) const;
  /// The whole tensor, assembled from its pieces (CPU).
  torch::Tensor read(const std::string& name) const;
  std::vector<std::string> names() const;
  /// The names of the scalar attributes (set_attr keys).
  std::vector<std::string> attr_names() const;
  std::optional<int64_t> attr_int(const std::string& key) const;
  std::optional<double> attr_double(const std::string& key) const;
  std::optional<std::string> attr_string(const std::string& key) const;
  /// A human-readable summary (unidiff ckpt info).
  std::string describe() const;

 private:
  struct Entry {
    std::vector<int64_t> shape;
    std::string dtype;
    std::vector<std::array<int64_t, 3>> pieces;  // (rank, start, count)
  };
  std::filesystem::path dir_;
  std::shared_ptr<h5::File> manifest_;  // open once: attributes are read from it on demand
  int64_t step_ = 0;
  int world_size_ = 0;
  std::map<std::string, Entry> tensors_;
};

/// RUN_DIR/checkpoints.
std::filesystem::path checkpoints_dir(const std::filesystem::path& run_dir);
/// RUN_DIR/checkpoints/step-N folders (complete or not; no temporaries), newest first.
std::vector<std::filesystem::path> step_dirs_newest_first(const std::filesystem::path& run_dir);

}  // namespace unidiff::dist
