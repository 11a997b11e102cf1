// HDF5 C API behind core/h5.h. HDF5's own error printing is switched off; every failing call
// becomes an exception that names the call and the file. Missing or unreadable user files raise
// InputError (exit code 2); failures of files we write raise std::runtime_error.
#include "core/h5.h"

#include <hdf5.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <mutex>

#include "core/error.h"
#include "core/fs.h"

namespace unidiff::h5 {
namespace {

// HDF5 closes every file still open from an exit handler. After a close that failed (a full disk
// during a checkpoint) that handler crashes with SIGSEGV inside H5F__close_cb (HDF5 1.10), turning
// a clean exit 1 into 139. Every file this project writes is closed by its owner (and only renamed
// into place once complete), and files open for reading need nothing at exit, so the handler is
// not installed. This runs before main, before any other HDF5 call, as HDF5 requires.
const bool kNoExitHandler = [] {
  H5dont_atexit();
  return true;
}();

void silence_hdf5() {
  static std::once_flag once;
  std::call_once(once, [] { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); });
}

std::string hdf5_error_text() {
  std::string text;
  H5Ewalk2(
      H5E_DEFAULT, H5E_WALK_DOWNWARD,
      [](unsigned n, const H5E_error2_t* e, void* data) -> herr_t {
        auto* s = static_cast<std::string*>(data);
        if (n == 0 && e->desc) *s = e->desc;
        return 0;
      },
      &text);
  return text.empty() ? "unknown HDF5 error" : text;
}

[[noreturn]] void fail(const std::string& what, const std::filesystem::path& path) {
  throw std::runtime_error("HDF5: " + what + " failed for '" + path.string() +
                           "': " + hdf5_error_text());
}

#define H5_CHECK(expr, what, path)            \
  do {                                        \
    if ((expr) < 0) fail((what), (path));     \
  } while (0)

/// Closes any HDF5 identifier on scope exit.
class Handle {
 public:
  explicit Handle(hid_t id) : id_(id) {}
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  Handle(Handle&& other) noexcept : id_(other.id_) { other.id_ = -1; }
  Handle& operator=(Handle&&) = delete;
  ~Handle() {
    if (id_ < 0) return;
    switch (H5Iget_type(id_)) {
      case H5I_DATASET: H5Dclose(id_); break;
      case H5I_DATASPACE: H5Sclose(id_); break;
      case H5I_DATATYPE: H5Tclose(id_); break;
      case H5I_GROUP: H5Gclose(id_); break;
      case H5I_ATTR: H5Aclose(id_); break;
      case H5I_GENPROP_LST: H5Pclose(id_); break;
      default: break;
    }
  }
  hid_t get() const { return id_; }
  bool ok() const { return id_ >= 0; }

 private:
  hid_t id_;
};

hid_t native_type(torch::ScalarType t) {
  switch (t) {
    case torch::kUInt8: return H5T_NATIVE_UINT8;
    case torch::kInt32: return H5T_NATIVE_INT32;
    case torch::kInt64: return H5T_NATIVE_INT64;
    case torch::kFloat32: return H5T_NATIVE_FLOAT;
    case torch::kFloat64: return H5T_NATIVE_DOUBLE;
    default: break;
  }
  throw std::invalid_argument(std::string("HDF5: cannot store tensors of dtype ") +
                              c10::toString(t));
}

/// Makes every missing group on the way to `name`'s parent.
void make_parents(hid_t file, const std::string& name, const std::filesystem::path& path) {
  for (size_t pos = name.find('/', 1); pos != std::string::npos; pos = name.find('/', pos + 1)) {
    const std::string group = name.substr(0, pos);
    if (H5Lexists(file, group.c_str(), H5P_DEFAULT) > 0) continue;
    Handle g(H5Gcreate2(file, group.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    if (!g.ok()) fail("creating group " + group, path);
  }
}

bool link_exists(hid_t file, const std::string& name) {
  if (name == "/") return true;
  // Check every prefix: H5Lexists fails (rather than answering no) when a parent is missing.
  for (size_t pos = name.find('/', 1);; pos = name.find('/', pos + 1)) {
    const std::string part = name.substr(0, pos);
    if (H5Lexists(file, part.c_str(), H5P_DEFAULT) <= 0) return false;
    if (pos == std::string::npos) return true;
  }
}

Handle open_dataset(const File& file, const std::string& name) {
  UD_CHECK_INPUT(file.has(name), "'", file.path().string(), "' has no dataset ", name);
  Handle d(H5Dopen2(file.id(), name.c_str(), H5P_DEFAULT));
  if (!d.ok()) fail("opening dataset " + name, file.path());
  return d;
}

}  // namespace

File File::open_read(const std::filesystem::path& path) {
  silence_hdf5();
  UD_CHECK_INPUT(std::filesystem::exists(path), "file '", path.string(), "' does not exist");
  UD_CHECK_INPUT(!std::filesystem::is_directory(path), "'", path.string(),
                 "' is a directory, not an HDF5 file");
  UD_CHECK_INPUT(H5Fis_hdf5(path.c_str()) > 0, "'", path.string(),
                 "' is not an HDF5 file (or is truncated)");
  const hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  UD_CHECK_INPUT(id >= 0, "cannot open HDF5 file '", path.string(),
                 "': it is damaged or truncated (HDF5: ", hdf5_error_text(), ")");
  return File(path, id);
}

File File::create(const std::filesystem::path& path) {
  silence_hdf5();
  const hid_t id = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (id < 0) fail("creating file", path);
  return File(path, id);
}

File::File(File&& other) noexcept : path_(std::move(other.path_)), id_(other.id_) {
  other.id_ = -1;
}

File& File::operator=(File&& other) noexcept {
  if (this != &other) {
    close();
    path_ = std::move(other.path_);
    id_ = other.id_;
    other.id_ = -1;
  }
  return *this;
}

File::~File() { close(); }

void File::close() {
  if (id_ >= 0) {
    H5Fclose(id_);
    id_ = -1;
  }
}

bool File::has(const std::string& name) const { return link_exists(id_, name); }

bool is_hdf5(const std::filesystem::path& path) {
  silence_hdf5();
  return std::filesystem::is_regular_file(path) && H5Fis_hdf5(path.c_str()) > 0;
}

namespace {

/// Type and shape of an open dataset.
DatasetInfo info_of(const Handle& d, const std::string& name, const File& file) {
  Handle space(H5Dget_space(d.get()));
  const int rank = H5Sget_simple_extent_ndims(space.get());
  if (rank < 0) fail("reading the shape of " + name, file.path());
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  DatasetInfo info;
  info.shape.assign(dims.begin(), dims.end());
  Handle type(H5Dget_type(d.get()));
  const H5T_class_t cls = H5Tget_class(type.get());
  const size_t size = H5Tget_size(type.get());
  if (cls == H5T_INTEGER) {
    const bool is_signed = H5Tget_sign(type.get()) == H5T_SGN_2;
    info.type_name = (is_signed ? "int" : "uint") + std::to_string(size * 8);
    if (!is_signed && size == 1) info.dtype = torch::kUInt8;
    else if (is_signed && size == 4) info.dtype = torch::kInt32;
    else if (is_signed && size == 8) info.dtype = torch::kInt64;
    else info.supported = false;
  } else if (cls == H5T_FLOAT) {
    info.type_name = "float" + std::to_string(size * 8);
    if (size == 4) info.dtype = torch::kFloat32;
    else if (size == 8) info.dtype = torch::kFloat64;
    else info.supported = false;
  } else {
    info.type_name = "a non-numeric HDF5 type";
    info.supported = false;
  }
  return info;
}

/// deflate's largest ratio is about 1032:1; a filtered dataset declaring more than this many
/// times its stored bytes is no real compressed data.
constexpr double kMaxCompression = 2000;

std::string human_bytes(double b) {
  char buf[64];
  if (b >= 1ull << 30) std::snprintf(buf, sizeof(buf), "%.1f GiB", b / (1ull << 30));
  else if (b >= 1 << 20) std::snprintf(buf, sizeof(buf), "%.1f MiB", b / (1 << 20));
  else if (b >= 1 << 10) std::snprintf(buf, sizeof(buf), "%.1f KiB", b / (1 << 10));
  else std::snprintf(buf, sizeof(buf), "%.0f bytes", b);
  return buf;
}

/// Sizes read from a file are checked before anything is allocated: the bytes a dataset declares
/// (its shape times its element size) must be stored in the file (a dataset without filters holds
/// every byte it declares; a compressed one no fewer than 1 / kMaxCompression of them; a sparse one,
/// with chunks never written, is refused), and the `rows` to be read must fit in this machine's
/// memory. A 1.4 KB file declaring [2^28, 2] is refused naming the file and the dataset.
void check_storage(const Handle& d, const DatasetInfo& info, const std::string& name, const File& file,
                   int64_t rows) {
  double elements = 1, row = 1;
  for (size_t i = 0; i < info.shape.size(); ++i) {
    elements *= static_cast<double>(info.shape[i]);
    if (i > 0) row *= static_cast<double>(info.shape[i]);
  }
  const double item = static_cast<double>(c10::elementSize(info.dtype));
  const double declared = elements * item;
  if (declared == 0) return;
  const auto shape_text = [&] {
    std::string s = "[";
    for (size_t i = 0; i < info.shape.size(); ++i) s += (i ? ", " : "") + std::to_string(info.shape[i]);
    return s + "]";
  };
  const double stored = static_cast<double>(H5Dget_storage_size(d.get()));
  Handle plist(H5Dget_create_plist(d.get()));
  const bool filtered = plist.ok() && H5Pget_nfilters(plist.get()) > 0;
  const double needed = filtered ? declared / kMaxCompression : declared;
  UD_CHECK_INPUT(stored >= needed, "dataset ", name, " in '", file.path().string(), "' declares ", shape_text(), " ",
                 info.type_name, " (", human_bytes(declared), ") but the file stores ", human_bytes(stored),
                 " of it", filtered ? " compressed" : "", ": a truncated, sparse or hostile file");
  const double wanted = static_cast<double>(rows) * row * item;
  const double memory =
      static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGE_SIZE));
  UD_CHECK_INPUT(memory <= 0 || wanted <= memory, "reading dataset ", name, " of '", file.path().string(), "' (",
                 shape_text(), " ", info.type_name, ") needs ", human_bytes(wanted), ", more than this machine's ",
                 human_bytes(memory), " of memory");
}

}  // namespace

DatasetInfo dataset_info(const File& file, const std::string& name) {
  const Handle d = open_dataset(file, name);
  DatasetInfo info = info_of(d, name, file);
  // Every reader learns a dataset's shape here first: a shape the file does not store is refused
  // before anyone allocates by it (a loader's index permutation, a streaming buffer).
  if (info.supported && !info.shape.empty()) check_storage(d, info, name, file, 0);
  return info;
}

void write_tensor(File& file, const std::string& name, const torch::Tensor& tensor,
                  int64_t chunk_rows) {
  const torch::Tensor t = tensor.detach().to(torch::kCPU).contiguous();
  make_parents(file.id(), name, file.path());
  std::vector<hsize_t> dims(t.sizes().begin(), t.sizes().end());
  Handle space(dims.empty() ? H5Screate(H5S_SCALAR)
                            : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr));
  Handle plist(H5Pcreate(H5P_DATASET_CREATE));
  if (chunk_rows > 0 && !dims.empty() && dims[0] > 0) {
    std::vector<hsize_t> chunk = dims;
    chunk[0] = std::min<hsize_t>(dims[0], static_cast<hsize_t>(chunk_rows));
    H5_CHECK(H5Pset_chunk(plist.get(), static_cast<int>(chunk.size()), chunk.data()),
             "chunking " + name, file.path());
  }
  const hid_t type = native_type(t.scalar_type());
  Handle d(H5Dcreate2(file.id(), name.c_str(), type, space.get(), H5P_DEFAULT, plist.get(),
                      H5P_DEFAULT));
  if (!d.ok()) fail("creating dataset " + name, file.path());
  if (t.numel() > 0) {
    H5_CHECK(H5Dwrite(d.get(), type, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data_ptr()),
             "writing dataset " + name, file.path());
  }
}

torch::Tensor read_tensor(const File& file, const std::string& name) {
  const DatasetInfo info = dataset_info(file, name);
  return read_rows(file, name, 0, info.shape.empty() ? 1 : info.shape[0]);
}

torch::Tensor read_row_runs(const File& file, const std::string& name,
                            const std::vector<std::pair<int64_t, int64_t>>& runs) {
  // One open of the dataset serves both its metadata and the read.
  Handle d = open_dataset(file, name);
  const DatasetInfo info = info_of(d, name, file);
  UD_CHECK_INPUT(info.supported, "dataset ", name, " in '", file.path().string(),
                 "' has unsupported type ", info.type_name,
                 " (supported: uint8, int32, int64, float32, float64)");
  UD_ASSERT(!info.shape.empty(), "read_row_runs needs a dataset with rows");
  int64_t total = 0;
  for (const auto& [start, count] : runs) {
    UD_ASSERT(start >= 0 && count > 0 && start + count <= info.shape[0], "bad run");
    total += count;
  }
  check_storage(d, info, name, file, total);
  std::vector<int64_t> shape = info.shape;
  shape[0] = total;
  torch::Tensor out = torch::empty(shape, info.dtype);
  if (total == 0) return out;
  Handle file_space(H5Dget_space(d.get()));
  std::vector<hsize_t> offset(shape.size(), 0), extent(info.shape.begin(), info.shape.end());
  bool first = true;
  for (const auto& [start, count] : runs) {
    offset[0] = static_cast<hsize_t>(start);
    extent[0] = static_cast<hsize_t>(count);
    H5_CHECK(H5Sselect_hyperslab(file_space.get(), first ? H5S_SELECT_SET : H5S_SELECT_OR,
                                 offset.data(), nullptr, extent.data(), nullptr),
             "selecting rows of " + name, file.path());
    first = false;
  }
  std::vector<hsize_t> mem_extent(shape.begin(), shape.end());
  Handle mem_space(H5Screate_simple(static_cast<int>(mem_extent.size()), mem_extent.data(), nullptr));
  H5_CHECK(H5Dread(d.get(), native_type(info.dtype), mem_space.get(), file_space.get(), H5P_DEFAULT,
                   out.data_ptr()),
           "reading rows of " + name, file.path());
  return out;
}

std::optional<RawExtent> raw_extent(const File& file, const std::string& name) {
  Handle d = open_dataset(file, name);
  const DatasetInfo info = info_of(d, name, file);
  if (!info.supported) return std::nullopt;
  Handle plist(H5Dget_create_plist(d.get()));
  if (!plist.ok() || H5Pget_layout(plist.get()) != H5D_CONTIGUOUS || H5Pget_nfilters(plist.get()) != 0) {
    return std::nullopt;
  }
  Handle type(H5Dget_type(d.get()));
  if (H5Tequal(type.get(), native_type(info.dtype)) <= 0) return std::nullopt;
  const haddr_t offset = H5Dget_offset(d.get());
  if (offset == HADDR_UNDEF) return std::nullopt;  // no storage allocated (e.g. zero rows)
  return RawExtent{static_cast<int64_t>(offset), static_cast<int64_t>(H5Dget_storage_size(d.get()))};
}

torch::Tensor read_rows(const File& file, const std::string& name, int64_t start, int64_t count) {
  const DatasetInfo info = dataset_info(file, name);
  if (!info.shape.empty()) {
    UD_ASSERT(start >= 0 && count >= 0 && start + count <= info.shape[0], "rows [", start, ", ",
              start + count, ") of ", name, " with ", info.shape[0], " rows");
    if (count == 0) {
      std::vector<int64_t> shape = info.shape;
      shape[0] = 0;
      return torch::empty(shape, info.dtype);
    }
    return read_row_runs(file, name, {{start, count}});
  }
  UD_CHECK_INPUT(info.supported, "dataset ", name, " in '", file.path().string(),
                 "' has unsupported type ", info.type_name,
                 " (supported: uint8, int32, int64, float32, float64)");
  Handle d = open_dataset(file, name);
  torch::Tensor out = torch::empty({}, info.dtype);
  H5_CHECK(H5Dread(d.get(), native_type(info.dtype), H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data_ptr()),
           "reading " + name, file.path());
  return out;
}

namespace {

template <typename Fn>
void with_new_attr(File& file, const std::string& object, const std::string& key, hid_t type,
                   Fn&& write) {
  if (object != "/") make_parents(file.id(), object + "/x", file.path());
  if (!file.has(object)) {
    Handle g(H5Gcreate2(file.id(), object.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    if (!g.ok()) fail("creating group " + object, file.path());
  }
  if (H5Aexists_by_name(file.id(), object.c_str(), key.c_str(), H5P_DEFAULT) > 0) {
    H5_CHECK(H5Adelete_by_name(file.id(), object.c_str(), key.c_str(), H5P_DEFAULT),
             "replacing attribute " + key, file.path());
  }
  Handle space(H5Screate(H5S_SCALAR));
  Handle attr(H5Acreate_by_name(file.id(), object.c_str(), key.c_str(), type, space.get(),
                                H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  if (!attr.ok()) fail("creating attribute " + object + "@" + key, file.path());
  H5_CHECK(write(attr.get()), "writing attribute " + key, file.path());
}

std::optional<Handle> open_attr(const File& file, const std::string& object,
                                const std::string& key) {
  if (!file.has(object)) return std::nullopt;
  if (H5Aexists_by_name(file.id(), object.c_str(), key.c_str(), H5P_DEFAULT) <= 0) {
    return std::nullopt;
  }
  std::optional<Handle> h;
  h.emplace(H5Aopen_by_name(file.id(), object.c_str(), key.c_str(), H5P_DEFAULT, H5P_DEFAULT));
  if (!h->ok()) fail("opening attribute " + object + "@" + key, file.path());
  return h;
}

}  // namespace

void write_attr(File& file, const std::string& object, const std::string& key, int64_t value) {
  with_new_attr(file, object, key, H5T_NATIVE_INT64,
                [&](hid_t a) { return H5Awrite(a, H5T_NATIVE_INT64, &value); });
}

void write_attr(File& file, const std::string& object, const std::string& key, double value) {
  with_new_attr(file, object, key, H5T_NATIVE_DOUBLE,
                [&](hid_t a) { return H5Awrite(a, H5T_NATIVE_DOUBLE, &value); });
}

void write_attr(File& file, const std::string& object, const std::string& key,
                const std::string& value) {
  Handle type(H5Tcopy(H5T_C_S1));
  H5Tset_size(type.get(), std::max<size_t>(1, value.size()));
  H5Tset_strpad(type.get(), H5T_STR_NULLPAD);
  H5Tset_cset(type.get(), H5T_CSET_UTF8);
  const std::string padded = value.empty() ? std::string(1, '\0') : value;
  with_new_attr(file, object, key, type.get(),
                [&](hid_t a) { return H5Awrite(a, type.get(), padded.data()); });
}

namespace {
/// A number attribute must hold one integer or float: a string would fail inside HDF5 without
/// naming the field, and an array would be read past the one value's memory (found by the model
/// file fuzzer, FUZZ_STRICT=1).
void check_numeric_scalar(const Handle& a, const File& file, const std::string& object, const std::string& key) {
  Handle type(H5Aget_type(a.get()));
  const H5T_class_t cls = H5Tget_class(type.get());
  UD_CHECK_INPUT(cls == H5T_INTEGER || cls == H5T_FLOAT, "'", file.path().string(), "' attribute '", key, "' of ",
                 object, " is not a number (HDF5 type class ", static_cast<int>(cls), ")");
  Handle space(H5Aget_space(a.get()));
  UD_CHECK_INPUT(H5Sget_simple_extent_npoints(space.get()) == 1, "'", file.path().string(), "' attribute '", key,
                 "' of ", object, " holds ", H5Sget_simple_extent_npoints(space.get()), " values, expected one");
}
}  // namespace

std::optional<int64_t> read_attr_int(const File& file, const std::string& object,
                                     const std::string& key) {
  auto a = open_attr(file, object, key);
  if (!a) return std::nullopt;
  check_numeric_scalar(*a, file, object, key);
  int64_t v = 0;
  H5_CHECK(H5Aread(a->get(), H5T_NATIVE_INT64, &v), "reading attribute " + key, file.path());
  return v;
}

std::optional<double> read_attr_double(const File& file, const std::string& object,
                                       const std::string& key) {
  auto a = open_attr(file, object, key);
  if (!a) return std::nullopt;
  check_numeric_scalar(*a, file, object, key);
  double v = 0;
  H5_CHECK(H5Aread(a->get(), H5T_NATIVE_DOUBLE, &v), "reading attribute " + key, file.path());
  return v;
}

std::optional<std::string> read_attr_string(const File& file, const std::string& object,
                                            const std::string& key) {
  auto a = open_attr(file, object, key);
  if (!a) return std::nullopt;
  Handle type(H5Aget_type(a->get()));
  if (H5Tget_class(type.get()) != H5T_STRING) return std::nullopt;
  if (H5Tis_variable_str(type.get()) > 0) {
    char* s = nullptr;
    Handle mem(H5Tcopy(H5T_C_S1));
    H5Tset_size(mem.get(), H5T_VARIABLE);
    H5Tset_cset(mem.get(), H5Tget_cset(type.get()));  // h5py writes str as UTF-8: ASCII would not convert
    H5_CHECK(H5Aread(a->get(), mem.get(), &s), "reading attribute " + key, file.path());
    std::string out = s ? s : "";
    H5free_memory(s);
    return out;
  }
  std::string buf(H5Tget_size(type.get()), '\0');
  H5_CHECK(H5Aread(a->get(), type.get(), buf.data()), "reading attribute " + key, file.path());
  buf.resize(std::strlen(buf.c_str()));
  return buf;
}

std::vector<std::string> list_attrs(const File& file, const std::string& object) {
  std::vector<std::string> out;
  if (!file.has(object)) return out;
  const auto collect = [](hid_t, const char* name, const H5A_info_t*, void* data) -> herr_t {
    static_cast<std::vector<std::string>*>(data)->emplace_back(name);
    return 0;
  };
  hsize_t idx = 0;
  H5_CHECK(H5Aiterate_by_name(file.id(), object.c_str(), H5_INDEX_NAME, H5_ITER_INC, &idx, collect, &out,
                              H5P_DEFAULT),
           "listing the attributes of " + object, file.path());
  return out;
}

std::vector<std::string> list_datasets(const File& file, const std::string& group) {
  struct Ctx {
    std::string base;
    std::vector<std::string> out;
  } ctx{group == "/" ? "" : group, {}};
#if H5_VERSION_GE(1, 12, 0)
  H5_CHECK(H5Ovisit3(
               file.id(), H5_INDEX_NAME, H5_ITER_INC,
               [](hid_t, const char* name, const H5O_info2_t* info, void* data) -> herr_t {
#else
  H5_CHECK(H5Ovisit2(
               file.id(), H5_INDEX_NAME, H5_ITER_INC,
               [](hid_t, const char* name, const H5O_info_t* info, void* data) -> herr_t {
#endif
                 auto* c = static_cast<Ctx*>(data);
                 if (info->type == H5O_TYPE_DATASET) c->out.push_back("/" + std::string(name));
                 return 0;
               },
               &ctx, H5O_INFO_BASIC),
           "listing datasets", file.path());
  std::vector<std::string> out;
  for (auto& n : ctx.out) {
    if (ctx.base.empty() || n.rfind(ctx.base + "/", 0) == 0) out.push_back(n);
  }
  std::sort(out.begin(), out.end());
  return out;
}

namespace {
void sync_file(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw std::runtime_error("cannot reopen '" + path.string() + "' to sync it");
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) throw std::runtime_error("fsync of '" + path.string() + "' failed");
}
}  // namespace

void write_atomically(const std::filesystem::path& path, const std::function<void(File&)>& fill) {
  const std::filesystem::path tmp =
      path.parent_path() / ("." + path.filename().string() + ".tmp" + std::to_string(getpid()));
  try {
    {
      File f = File::create(tmp);
      fill(f);
      H5_CHECK(H5Fflush(f.id(), H5F_SCOPE_GLOBAL), "flushing", tmp);
    }
    sync_file(tmp);
    std::filesystem::rename(tmp, path);
    fs::sync_directory(path.parent_path().empty() ? std::filesystem::path(".") : path.parent_path());
  } catch (const InputError&) {
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
    throw;
  } catch (const std::exception& e) {
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
    // HDF5 says "unable to flush mounted file hierarchy" for a full disk: say how much room is left.
    std::string room;
    const auto space = std::filesystem::space(path.parent_path().empty() ? "." : path.parent_path(), ec);
    if (!ec) room = unidiff::detail::str_cat(" (its file system has ", space.available >> 10, " KiB free)");
    throw std::runtime_error(
        unidiff::detail::str_cat("writing '", path.string(), "' failed", room, ": ", e.what()));
  }
}

}  // namespace unidiff::h5
