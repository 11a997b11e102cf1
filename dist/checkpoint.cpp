// dist/checkpoint.h.
#include "dist/checkpoint.h"

#include <algorithm>
#include <csignal>
#include <cstring>
#include <fstream>
#include <cstdlib>
#include <sstream>

#include "core/error.h"
#include "core/fs.h"
#include "core/h5.h"
#include "core/log.h"

namespace unidiff::dist {
namespace {

namespace sfs = std::filesystem;

/// What a failed save leaves: the checkpoint `latest` names (untouched by the failure), if any.
std::string previous_checkpoint_note(const sfs::path& step_dir) {
  std::ifstream in(step_dir.parent_path() / "latest");
  std::string name;
  if (in && std::getline(in, name) && !name.empty()) {
    return "the last complete checkpoint, " + name + ", is intact";
  }
  return "there is no earlier checkpoint";
}

/// Runs `write`; a failure removes the unfinished step folder and says what is left.
template <typename Fn>
void write_or_explain(const sfs::path& step_dir, Fn&& write) {
  try {
    write();
  } catch (const std::exception& e) {
    std::error_code ec;
    sfs::remove_all(step_dir, ec);
    throw std::runtime_error(detail::str_cat("saving checkpoint ", step_dir.filename().string(), " failed; ",
                                             previous_checkpoint_note(step_dir), ": ", e.what()));
  }
}

std::string step_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "step-%09ld", static_cast<long>(step));
  return buf;
}

sfs::path shard_path(const sfs::path& dir, int rank) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "shard-%05d.h5", rank);
  return dir / buf;
}

std::string piece_dataset(const std::string& name, int64_t start) {
  return "/" + name + "#" + std::to_string(start);
}

/// Every rank's string, in rank order (lengths first, then the padded bytes).
std::vector<std::string> gather_strings(Communicator& comm, const std::string& mine) {
  torch::Tensor len = torch::tensor({static_cast<int64_t>(mine.size())}, torch::kInt64);
  const torch::Tensor lens = comm.all_gather(len);
  const int64_t max_len = std::max<int64_t>(1, lens.max().item<int64_t>());
  torch::Tensor bytes = torch::zeros({max_len}, torch::kUInt8);
  std::memcpy(bytes.data_ptr(), mine.data(), mine.size());
  const torch::Tensor all = comm.all_gather(bytes);
  std::vector<std::string> out;
  for (int r = 0; r < comm.size(); ++r) {
    const auto* p = all.data_ptr<uint8_t>() + r * max_len;
    out.emplace_back(reinterpret_cast<const char*>(p), static_cast<size_t>(lens[r].item<int64_t>()));
  }
  return out;
}

torch::ScalarType parse_dtype(const std::string& s) {
  for (const auto t : {torch::kFloat32, torch::kFloat64, torch::kInt64, torch::kInt32, torch::kUInt8}) {
    if (s == c10::toString(t)) return t;
  }
  UD_FAIL_INPUT("unsupported dtype '", s, "' in a checkpoint manifest");
}

/// A test hook: UNIDIFF_TEST_KILL_IN_SAVE=r:s makes rank r die by SIGKILL in the middle of the
/// save of step s (the other ranks may have written their shards; no manifest exists yet).
void maybe_die_for_test(int rank, int64_t step) {
  const char* v = std::getenv("UNIDIFF_TEST_KILL_IN_SAVE");
  if (v == nullptr) return;
  int r = -1;
  long s = -1;
  if (std::sscanf(v, "%d:%ld", &r, &s) == 2 && r == rank && s == step) std::raise(SIGKILL);
}

}  // namespace

sfs::path checkpoints_dir(const sfs::path& run_dir) { return run_dir / "checkpoints"; }

std::vector<sfs::path> step_dirs_newest_first(const sfs::path& run_dir) {
  std::vector<sfs::path> out;
  const sfs::path dir = checkpoints_dir(run_dir);
  if (!sfs::is_directory(dir)) return out;
  for (const auto& e : sfs::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (e.is_directory() && n.rfind("step-", 0) == 0 && n.find('.') == std::string::npos) {
      out.push_back(e.path());
    }
  }
  std::sort(out.begin(), out.end(), std::greater<>());
  return out;
}

CheckpointWriter::CheckpointWriter(Communicator& comm, const sfs::path& run_dir, int64_t step)
    : comm_(comm), dir_(checkpoints_dir(run_dir) / step_name(step)), step_(step) {
  if (comm_.rank() == 0) {
    fs::remove_tree(dir_);  // the remains of an interrupted save of this step
    sfs::create_directories(dir_);
  }
  comm_.barrier();
}

void CheckpointWriter::add_replicated(const std::string& name, const torch::Tensor& tensor) {
  if (comm_.rank() != 0) return;
  add_piece(name, tensor.sizes(), 0, tensor);
}

void CheckpointWriter::add_piece(const std::string& name, at::IntArrayRef shape, int64_t start,
                                 const torch::Tensor& data) {
  UD_ASSERT(name.find('#') == std::string::npos && name.find('\t') == std::string::npos &&
                name.find('\n') == std::string::npos && !name.empty() && name[0] != '/',
            "bad checkpoint tensor name '", name, "'");
  int64_t numel = 1;
  for (const int64_t d : shape) numel *= d;
  UD_ASSERT(start >= 0 && start + data.numel() <= numel, "piece of ", name, " out of range");
  if (data.numel() == 0 && numel > 0) return;
  pieces_.push_back({name, std::vector<int64_t>(shape.begin(), shape.end()), data.scalar_type(),
                     start, data.detach().to(torch::kCPU).contiguous().reshape({-1})});
}

void CheckpointWriter::set_attr(const std::string& key, int64_t value) { ints_[key] = value; }
void CheckpointWriter::set_attr(const std::string& key, double value) { doubles_[key] = value; }
void CheckpointWriter::set_attr(const std::string& key, const std::string& value) {
  strings_[key] = value;
}

sfs::path CheckpointWriter::commit(int keep) {
  const int rank = comm_.rank(), world = comm_.size();
  maybe_die_for_test(rank, step_);
  // 1. This rank's shard, atomically (temporary file, fsync, rename). A failed write (a full disk)
  // leaves the previous checkpoint as it was: `latest` moves only after every shard and the
  // manifest are complete. The unfinished folder is removed (resume ignores it in any case).
  write_or_explain(dir_, [&] {
    h5::write_atomically(shard_path(dir_, rank), [&](h5::File& f) {
      for (const Piece& p : pieces_) h5::write_tensor(f, piece_dataset(p.name, p.start), p.data);
      h5::write_attr(f, "/", "rank", static_cast<int64_t>(rank));
      h5::write_attr(f, "/", "step", step_);
    });
  });
  const fs::FileDigest digest = fs::digest_file(shard_path(dir_, rank));
  // 2. Rank 0 learns every rank's pieces and digest.
  std::ostringstream meta;
  meta << digest.size << "\t" << digest.crc32 << "\n";
  for (const Piece& p : pieces_) {
    meta << p.name << "\t" << c10::toString(p.dtype) << "\t";
    for (size_t i = 0; i < p.shape.size(); ++i) meta << (i ? "," : "") << p.shape[i];
    meta << "\t" << p.start << "\t" << p.data.numel() << "\n";
  }
  const std::vector<std::string> all = gather_strings(comm_, meta.str());
  if (rank == 0) {
    struct Entry {
      std::string shape, dtype;
      std::vector<int64_t> pieces;
    };
    std::map<std::string, Entry> tensors;
    std::vector<int64_t> sizes, crcs;
    for (int r = 0; r < world; ++r) {
      std::istringstream in(all[static_cast<size_t>(r)]);
      std::string line;
      std::getline(in, line);
      std::istringstream head(line);
      int64_t size = 0, crc = 0;
      head >> size >> crc;
      sizes.push_back(size);
      crcs.push_back(crc);
      while (std::getline(in, line)) {
        std::istringstream fields(line);
        std::string name, dtype, shape, start, count;
        std::getline(fields, name, '\t');
        std::getline(fields, dtype, '\t');
        std::getline(fields, shape, '\t');
        std::getline(fields, start, '\t');
        std::getline(fields, count, '\t');
        Entry& e = tensors[name];
        e.shape = shape;
        e.dtype = dtype;
        e.pieces.insert(e.pieces.end(), {r, std::stoll(start), std::stoll(count)});
      }
    }
    // 3. The manifest, then the pointer: the checkpoint exists from the pointer's rename on.
    write_or_explain(dir_, [&] {
      h5::write_atomically(dir_ / "manifest.h5", [&](h5::File& f) {
        h5::write_attr(f, "/", "format", std::string(kCheckpointFormat));
        h5::write_attr(f, "/", "step", step_);
        h5::write_attr(f, "/", "world_size", static_cast<int64_t>(world));
        for (const auto& [k, v] : ints_) h5::write_attr(f, "/attrs", k, v);
        for (const auto& [k, v] : doubles_) h5::write_attr(f, "/attrs", k, v);
        for (const auto& [k, v] : strings_) h5::write_attr(f, "/attrs", k, v);
        h5::write_tensor(f, "/shards/size", torch::tensor(sizes, torch::kInt64));
        h5::write_tensor(f, "/shards/crc32", torch::tensor(crcs, torch::kInt64));
        for (const auto& [name, e] : tensors) {
          std::vector<int64_t> shape;
          std::stringstream ss(e.shape);
          for (std::string d; std::getline(ss, d, ',');) shape.push_back(std::stoll(d));
          const std::string g = "/tensors/" + name;
          h5::write_tensor(f, g + "/shape", torch::tensor(shape, torch::kInt64));
          h5::write_tensor(f, g + "/pieces",
                           torch::tensor(e.pieces, torch::kInt64).view({-1, 3}));
          h5::write_attr(f, g, "dtype", e.dtype);
        }
      });
    });
    fs::write_text_atomically(checkpoints_dir(dir_.parent_path().parent_path()) / "latest",
                              dir_.filename().string() + "\n");
    if (keep > 0) {
      int kept = 0;
      for (const auto& d : step_dirs_newest_first(dir_.parent_path().parent_path())) {
        if (d == dir_ || sfs::exists(d / "manifest.h5")) {
          if (++kept > keep && d != dir_) fs::remove_tree(d);
        }
      }
    }
  }
  comm_.barrier();
  return dir_;
}

CheckpointReader::CheckpointReader(const sfs::path& dir) : dir_(dir) {
  const sfs::path manifest = dir / "manifest.h5";
  UD_CHECK_INPUT(sfs::exists(manifest), "checkpoint '", dir.string(),
                 "' is incomplete: it has no manifest.h5 (the save was interrupted)");
  manifest_ = std::make_shared<h5::File>(h5::File::open_read(manifest));
  const h5::File& f = *manifest_;
  const auto format = h5::read_attr_string(f, "/", "format");
  UD_CHECK_INPUT(format && *format == kCheckpointFormat, "'", manifest.string(),
                 "' is not a unidiff checkpoint manifest (format ", format.value_or("missing"), ")");
  step_ = h5::read_attr_int(f, "/", "step").value_or(-1);
  world_size_ = static_cast<int>(h5::read_attr_int(f, "/", "world_size").value_or(0));
  UD_CHECK_INPUT(step_ >= 0 && world_size_ > 0, "'", manifest.string(), "' lacks step or world size");
  // Every number below comes from the file: types, shapes and ranges are checked before use
  // (the checkpoint fuzzer, FUZZ_STRICT=1, found a 0-dim /shards/size failing inside LibTorch).
  const auto integers = [&](const std::string& ds) {
    UD_CHECK_INPUT(f.has(ds), "'", manifest.string(), "' has no ", ds);
    const torch::Tensor t = h5::read_tensor(f, ds);
    UD_CHECK_INPUT(!torch::isFloatingType(t.scalar_type()) && t.scalar_type() != torch::kBool && t.dim() <= 2,
                   "'", manifest.string(), "' ", ds, " must hold integers in at most 2 dimensions");
    return t.to(torch::kInt64).reshape({-1});
  };
  const torch::Tensor sizes = integers("/shards/size");
  const torch::Tensor crcs = integers("/shards/crc32");
  UD_CHECK_INPUT(sizes.numel() == world_size_ && crcs.numel() == world_size_, "'",
                 manifest.string(), "' lists ", sizes.numel(), " shards for ", world_size_, " ranks");
  for (int r = 0; r < world_size_; ++r) {
    const sfs::path shard = shard_path(dir, r);
    UD_CHECK_INPUT(sfs::exists(shard), "checkpoint shard '", shard.string(), "' is missing");
    const fs::FileDigest d = fs::digest_file(shard);
    UD_CHECK_INPUT(d.size == sizes[r].item<int64_t>(), "checkpoint shard '", shard.string(),
                   "' is truncated or was replaced: ", d.size, " bytes, the manifest says ",
                   sizes[r].item<int64_t>());
    UD_CHECK_INPUT(static_cast<int64_t>(d.crc32) == crcs[r].item<int64_t>(), "checkpoint shard '",
                   shard.string(), "' is corrupted: its CRC-32 differs from the manifest's");
  }
  for (const std::string& ds : h5::list_datasets(f, "/tensors")) {
    const std::string suffix = "/shape";
    if (ds.size() <= suffix.size() || ds.compare(ds.size() - suffix.size(), suffix.size(), suffix) != 0) {
      continue;
    }
    const std::string group = ds.substr(0, ds.size() - suffix.size());
    const std::string name = group.substr(std::string("/tensors/").size());
    Entry e;
    const torch::Tensor shape = integers(ds);
    UD_CHECK_INPUT(shape.numel() <= 8, "'", manifest.string(), "' ", ds, " has ", shape.numel(), " dimensions");
    int64_t numel = 1;
    for (int64_t i = 0; i < shape.numel(); ++i) {
      const int64_t d = shape[i].item<int64_t>();
      UD_CHECK_INPUT(d >= 0 && (d == 0 || numel <= (int64_t{1} << 40) / d), "'", manifest.string(), "' ", ds,
                     " declares an impossible size");
      numel *= d;
      e.shape.push_back(d);
    }
    e.dtype = h5::read_attr_string(f, group, "dtype").value_or("");
    (void)parse_dtype(e.dtype);  // refuses an unknown dtype now, naming it
    const torch::Tensor pieces = integers(group + "/pieces");
    UD_CHECK_INPUT(pieces.numel() % 3 == 0, "'", manifest.string(), "' ", group, "/pieces must be [k, 3]");
    int64_t covered = 0;
    for (int64_t i = 0; i < pieces.numel() / 3; ++i) {
      const int64_t rank = pieces[3 * i].item<int64_t>(), start = pieces[3 * i + 1].item<int64_t>(),
                    count = pieces[3 * i + 2].item<int64_t>();
      UD_CHECK_INPUT(rank >= 0 && rank < world_size_ && start >= 0 && count >= 0 && start <= numel &&
                         count <= numel - start,
                     "'", manifest.string(), "' ", group, "/pieces row ", i, " (", rank, ", ", start, ", ", count,
                     ") is out of range (", world_size_, " ranks, ", numel, " elements)");
      covered += count;
      e.pieces.push_back({rank, start, count});
    }
    UD_CHECK_INPUT(covered == numel, "checkpoint tensor ", name, " is incomplete: its pieces cover ", covered,
                   " of ", numel, " elements (", manifest.string(), ")");
    std::vector<std::array<int64_t, 3>> order = e.pieces;  // each element exactly once
    std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) { return a[1] < b[1]; });
    int64_t next = 0;
    for (const auto& piece : order) {
      UD_CHECK_INPUT(piece[1] == next || piece[2] == 0, "checkpoint tensor ", name,
                     "'s pieces overlap or leave a gap at element ", next, " (", manifest.string(), ")");
      next = std::max(next, piece[1] + piece[2]);
    }
    tensors_[name] = std::move(e);
  }
}

std::optional<CheckpointReader> CheckpointReader::find_latest(const sfs::path& run_dir) {
  const sfs::path pointer = checkpoints_dir(run_dir) / "latest";
  std::string named;
  if (sfs::exists(pointer)) {
    std::ifstream in(pointer);
    std::getline(in, named);
    try {
      // Confined to this run's checkpoints: a step-N folder name, never a path ("../../x", "/etc").
      const bool step_name = named.rfind("step-", 0) == 0 && named.size() > 5 &&
                             named.find_first_not_of("0123456789", 5) == std::string::npos;
      UD_CHECK_INPUT(step_name, "'latest' must name a step-N folder beside it, not '", named, "'");
      return CheckpointReader(checkpoints_dir(run_dir) / named);
    } catch (const InputError& e) {
      log::warn("checkpoint", detail::str_cat("'latest' names ", named, " but it is unusable (",
                                              e.what(), "); looking for an older one"));
    }
  }
  for (const auto& d : step_dirs_newest_first(run_dir)) {
    if (d.filename() == named) continue;
    try {
      CheckpointReader found(d);
      if (!named.empty() || sfs::exists(pointer)) {
        log::warn("checkpoint", "using " + d.string() + ", the newest complete checkpoint");
      }
      return found;
    } catch (const InputError& e) {
      log::warn("checkpoint", detail::str_cat("skipping ", d.string(), ": ", e.what()));
    }
  }
  return std::nullopt;
}

std::vector<int64_t> CheckpointReader::shape(const std::string& name) const {
  const auto it = tensors_.find(name);
  UD_CHECK_INPUT(it != tensors_.end(), "checkpoint '", dir_.string(), "' has no tensor ", name);
  return it->second.shape;
}

torch::Tensor CheckpointReader::read(const std::string& name) const {
  const auto it = tensors_.find(name);
  UD_CHECK_INPUT(it != tensors_.end(), "checkpoint '", dir_.string(), "' has no tensor ", name);
  const Entry& e = it->second;
  int64_t numel = 1;
  for (const int64_t d : e.shape) numel *= d;
  // The pieces (ranges checked at open) must be stored as declared before anything is allocated
  // by the declared shape: a manifest cannot make a few KB of shards allocate without bound.
  std::map<int64_t, h5::File> files;
  for (const auto& [rank, start, count] : e.pieces) {
    auto f = files.find(rank);
    if (f == files.end()) {
      f = files.emplace(rank, h5::File::open_read(shard_path(dir_, static_cast<int>(rank)))).first;
    }
    const std::string ds = piece_dataset(name, start);
    UD_CHECK_INPUT(f->second.has(ds), "checkpoint tensor ", name, " piece at ", start, " is missing from ",
                   f->second.path().string());
    int64_t stored = 1;
    for (const int64_t d : h5::dataset_info(f->second, ds).shape) stored *= d;
    UD_CHECK_INPUT(stored == count, "checkpoint tensor ", name, " piece at ", start, " has ", stored,
                   " elements, the manifest says ", count);
  }
  torch::Tensor flat = torch::empty({numel}, parse_dtype(e.dtype));
  int64_t covered = 0;
  for (const auto& [rank, start, count] : e.pieces) {
    auto f = files.find(rank);
    const torch::Tensor piece = h5::read_tensor(f->second, piece_dataset(name, start));
    UD_CHECK_INPUT(piece.numel() == count, "checkpoint tensor ", name, " piece at ", start,
                   " has ", piece.numel(), " elements, the manifest says ", count);
    flat.slice(0, start, start + count).copy_(piece.reshape({-1}));
    covered += count;
  }
  UD_CHECK_INPUT(covered == numel, "checkpoint tensor ", name, " is incomplete: its pieces cover ",
                 covered, " of ", numel, " elements");
  return flat.view(e.shape);
}

std::vector<std::string> CheckpointReader::names() const {
  std::vector<std::string> out;
  for (const auto& [name, e] : tensors_) out.push_back(name);
  return out;
}

std::optional<int64_t> CheckpointReader::attr_int(const std::string& key) const {
  return manifest_->has("/attrs") ? h5::read_attr_int(*manifest_, "/attrs", key) : std::nullopt;
}

std::optional<double> CheckpointReader::attr_double(const std::string& key) const {
  return manifest_->has("/attrs") ? h5::read_attr_double(*manifest_, "/attrs", key) : std::nullopt;
}

std::optional<std::string> CheckpointReader::attr_string(const std::string& key) const {
  return manifest_->has("/attrs") ? h5::read_attr_string(*manifest_, "/attrs", key) : std::nullopt;
}

std::vector<std::string> CheckpointReader::attr_names() const { return h5::list_attrs(*manifest_, "/attrs"); }

std::string CheckpointReader::describe() const {
  std::ostringstream out;
  out << "checkpoint " << dir_.string() << "\n  step " << step_ << ", written by " << world_size_
      << " rank(s)\n";
  const h5::File& f = *manifest_;
  if (f.has("/attrs")) {
    for (const char* key : {"config_hash", "unidiff_version", "method"}) {
      if (const auto v = h5::read_attr_string(f, "/attrs", key)) out << "  " << key << " " << *v << "\n";
    }
    for (const char* key : {"loader_position", "global_batch", "optimizer_steps"}) {
      if (const auto v = h5::read_attr_int(f, "/attrs", key)) out << "  " << key << " " << *v << "\n";
    }
  }
  std::map<std::string, std::pair<int64_t, int64_t>> groups;  // first component: tensors, elements
  for (const auto& [name, e] : tensors_) {
    int64_t numel = 1;
    for (const int64_t d : e.shape) numel *= d;
    const std::string group = name.substr(0, name.find('/'));
    groups[group].first += 1;
    groups[group].second += numel;
  }
  out << "  groups:\n";
  for (const auto& [g, c] : groups) {
    out << "    " << g << ": " << c.first << " tensors, " << c.second << " elements\n";
  }
  out << "  tensors:\n";
  for (const auto& [name, e] : tensors_) {
    out << "    " << name << " " << e.dtype << " [";
    for (size_t i = 0; i < e.shape.size(); ++i) out << (i ? ", " : "") << e.shape[i];
    out << "] in " << e.pieces.size() << " piece(s)\n";
  }
  return out.str();
}

}  // namespace unidiff::dist
