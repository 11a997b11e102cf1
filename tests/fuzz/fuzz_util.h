// Shared parts of the libFuzzer targets (tests/fuzz/*_fuzz.cpp; docs/fuzzing.md).
//
// The readers of HDF5 files are fuzzed structure-aware: the fuzzer's bytes are not an HDF5 file
// but a list of edits applied to a copy of a valid seed file (made by scripts/fuzz.sh with the
// project's own writers): set an attribute to an integer, a float (NaN, 1e300) or a string; replace
// a dataset by one of another dtype and shape, or by a chunked one declaring far more rows than it
// stores; delete a dataset or an attribute; overwrite values with NaN, Inf or huge numbers. The
// edited file is always well-formed HDF5, so what is tested is unidiff's validation (sizes, types,
// bounds, values), not HDF5's parser, whose bugs belong upstream.
//
// A reader may refuse an input with any exception (InputError is the expected one); it must not
// crash, overflow, allocate without bound (libFuzzer's -rss_limit_mb) or hang (-timeout).
// FUZZ_STRICT=1 makes every exception other than InputError a crash, to find refusals that do not
// name the file and field.
#pragma once

#include <fuzzer/FuzzedDataProvider.h>
#include <hdf5.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/fs.h"

namespace unidiff::fuzz {

/// A folder of this process for the edited copies.
inline const std::filesystem::path& work_dir() {
  static const std::filesystem::path dir = [] {
    const char* base = std::getenv("TMPDIR");
    std::filesystem::path d = std::filesystem::path(base ? base : "/tmp") /
                              ("unidiff-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d;
  }();
  return dir;
}

/// The seed named by the environment variable `var` (set by scripts/fuzz.sh).
inline std::filesystem::path seed(const char* var) {
  const char* s = std::getenv(var);
  if (s == nullptr || !std::filesystem::exists(s)) {
    std::fprintf(stderr, "fuzz target: set %s to a seed file (scripts/fuzz.sh does)\n", var);
    std::abort();
  }
  return s;
}

/// Runs `read`; an exception is a refusal (fine), except under FUZZ_STRICT=1 where only
/// InputError is.
template <typename Fn>
void refuse_or_read(Fn&& read) {
  static const bool strict = std::getenv("FUZZ_STRICT") != nullptr && std::string(std::getenv("FUZZ_STRICT")) == "1";
  try {
    read();
  } catch (const InputError&) {
  } catch (const std::exception& e) {
    if (strict) {
      std::fprintf(stderr, "FUZZ_STRICT: a refusal that is not InputError: %s\n", e.what());
      std::abort();
    }
  }
}

/// Applies up to `max_edits` edits taken from `p` to the HDF5 file at `path` (edited in place).
/// `keys` are attribute names worth trying besides those the file has.
class Editor {
 public:
  Editor(FuzzedDataProvider& p, std::vector<std::string> keys) : p_(p), keys_(std::move(keys)) {}

  void edit(const std::filesystem::path& path, int max_edits) {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    if (f < 0) return;
    const int n = p_.ConsumeIntegralInRange(0, max_edits);
    for (int i = 0; i < n && p_.remaining_bytes() > 0; ++i) {
      objects_.clear();
      datasets_.clear();
      collect(f);
      switch (p_.ConsumeIntegralInRange(0, 4)) {
        case 0: set_attribute(f); break;
        case 1: replace_dataset(f); break;
        case 2: delete_something(f); break;
        case 3: poke_values(f); break;
        case 4: add_dataset(f); break;
      }
    }
    H5Fclose(f);
  }

 private:
  void collect(hid_t f) {
    objects_.push_back("/");
#if H5_VERSION_GE(1, 12, 0)
    H5Ovisit3(
        f, H5_INDEX_NAME, H5_ITER_NATIVE,
        [](hid_t, const char* name, const H5O_info2_t* info, void* self) -> herr_t {
#else
    H5Ovisit2(
        f, H5_INDEX_NAME, H5_ITER_NATIVE,
        [](hid_t, const char* name, const H5O_info_t* info, void* self) -> herr_t {
#endif
          auto* e = static_cast<Editor*>(self);
          if (std::string(name) == ".") return 0;
          const std::string path = "/" + std::string(name);
          e->objects_.push_back(path);
          if (info->type == H5O_TYPE_DATASET) e->datasets_.push_back(path);
          return 0;
        },
        this, H5O_INFO_BASIC);
  }

  std::string pick(const std::vector<std::string>& v) {
    return v.empty() ? "/" : v[p_.ConsumeIntegralInRange<size_t>(0, v.size() - 1)];
  }

  std::vector<std::string> attrs_of(hid_t f, const std::string& object) {
    std::vector<std::string> names;
    H5Aiterate_by_name(
        f, object.c_str(), H5_INDEX_NAME, H5_ITER_NATIVE, nullptr,
        [](hid_t, const char* name, const H5A_info_t*, void* out) -> herr_t {
          static_cast<std::vector<std::string>*>(out)->push_back(name);
          return 0;
        },
        &names, H5P_DEFAULT);
    return names;
  }

  int64_t any_int() {
    static const int64_t specials[] = {0, -1, 1, 2, 255, 256, 1LL << 31, (1LL << 31) - 1, 1LL << 40,
                                       std::numeric_limits<int64_t>::max(), std::numeric_limits<int64_t>::min()};
    if (p_.ConsumeBool()) return specials[p_.ConsumeIntegralInRange<size_t>(0, std::size(specials) - 1)];
    return p_.ConsumeIntegral<int64_t>();
  }

  double any_double() {
    static const double specials[] = {0.0, -0.0, 1.0, -1.0, 1e-300, 1e300, -1e300, 1e6, 1e-6,
                                      std::numeric_limits<double>::quiet_NaN(),
                                      std::numeric_limits<double>::infinity(),
                                      -std::numeric_limits<double>::infinity()};
    if (p_.ConsumeBool()) return specials[p_.ConsumeIntegralInRange<size_t>(0, std::size(specials) - 1)];
    return p_.ConsumeFloatingPoint<double>();
  }

  void set_attribute(hid_t f) {
    const std::string object = pick(objects_);
    std::vector<std::string> names = attrs_of(f, object);
    names.insert(names.end(), keys_.begin(), keys_.end());
    const std::string name = pick(names);
    if (H5Aexists_by_name(f, object.c_str(), name.c_str(), H5P_DEFAULT) > 0) {
      H5Adelete_by_name(f, object.c_str(), name.c_str(), H5P_DEFAULT);
    }
    const hid_t space = H5Screate(H5S_SCALAR);
    switch (p_.ConsumeIntegralInRange(0, 2)) {
      case 0: {
        const int64_t v = any_int();
        const hid_t a = H5Acreate_by_name(f, object.c_str(), name.c_str(), H5T_NATIVE_INT64, space, H5P_DEFAULT,
                                          H5P_DEFAULT, H5P_DEFAULT);
        if (a >= 0) H5Awrite(a, H5T_NATIVE_INT64, &v), H5Aclose(a);
        break;
      }
      case 1: {
        const double v = any_double();
        const hid_t a = H5Acreate_by_name(f, object.c_str(), name.c_str(), H5T_NATIVE_DOUBLE, space,
                                          H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (a >= 0) H5Awrite(a, H5T_NATIVE_DOUBLE, &v), H5Aclose(a);
        break;
      }
      default: {
        std::string v = p_.ConsumeRandomLengthString(64);
        if (v.empty()) v = " ";
        const hid_t t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, v.size());
        const hid_t a =
            H5Acreate_by_name(f, object.c_str(), name.c_str(), t, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (a >= 0) H5Awrite(a, t, v.data()), H5Aclose(a);
        H5Tclose(t);
        break;
      }
    }
    H5Sclose(space);
  }

  hid_t any_type() {
    static const hid_t* types[] = {&H5T_NATIVE_FLOAT_g, &H5T_NATIVE_DOUBLE_g, &H5T_NATIVE_INT64_g,
                                   &H5T_NATIVE_INT32_g, &H5T_NATIVE_UINT8_g, &H5T_NATIVE_INT8_g};
    H5open();
    return *types[p_.ConsumeIntegralInRange<size_t>(0, std::size(types) - 1)];
  }

  /// A dataset at `name` of a fuzzed dtype and shape: stored (a few KB at most, values from the
  /// fuzzer) or chunked and sparse (declaring up to 2^40 elements, none written).
  void make_dataset(hid_t f, const std::string& name) {
    const int rank = p_.ConsumeIntegralInRange(0, 4);
    const bool sparse = p_.ConsumeBool();
    std::vector<hsize_t> dims(static_cast<size_t>(rank));
    uint64_t total = 1;
    for (auto& d : dims) {
      d = sparse ? (p_.ConsumeBool() ? p_.ConsumeIntegralInRange<hsize_t>(0, 1ULL << 20)
                                     : p_.ConsumeIntegralInRange<hsize_t>(0, 16))
                 : p_.ConsumeIntegralInRange<hsize_t>(0, 16);
      total *= std::max<hsize_t>(d, 1);
    }
    if (!sparse && total > 4096) return;
    const hid_t type = any_type();
    const hid_t space = H5Screate_simple(rank, dims.data(), nullptr);
    hid_t dcpl = H5P_DEFAULT;
    if (sparse && rank > 0) {
      dcpl = H5Pcreate(H5P_DATASET_CREATE);
      std::vector<hsize_t> chunk(dims.size());
      for (size_t k = 0; k < dims.size(); ++k) chunk[k] = std::max<hsize_t>(1, std::min<hsize_t>(dims[k], 64));
      H5Pset_chunk(dcpl, rank, chunk.data());
    }
    const hid_t d = H5Dcreate2(f, name.c_str(), type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (d >= 0) {
      if (!sparse) {
        std::vector<double> values(total);
        for (auto& v : values) v = p_.remaining_bytes() > 0 ? any_double() : 0.0;
        H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data());
      }
      H5Dclose(d);
    }
    if (dcpl != H5P_DEFAULT) H5Pclose(dcpl);
    H5Sclose(space);
  }

  void replace_dataset(hid_t f) {
    if (datasets_.empty()) return;
    const std::string name = pick(datasets_);
    H5Ldelete(f, name.c_str(), H5P_DEFAULT);
    make_dataset(f, name);
  }

  void add_dataset(hid_t f) {
    std::string name = pick(objects_);
    if (name.back() != '/') name += "/";
    name += keys_.empty() ? "x" : pick(keys_);
    if (H5Lexists(f, name.c_str(), H5P_DEFAULT) > 0) return;
    make_dataset(f, name);
  }

  void delete_something(hid_t f) {
    const std::string object = pick(objects_);
    const std::vector<std::string> attrs = attrs_of(f, object);
    if (!attrs.empty() && p_.ConsumeBool()) {
      H5Adelete_by_name(f, object.c_str(), pick(attrs).c_str(), H5P_DEFAULT);
    } else if (object != "/") {
      H5Ldelete(f, object.c_str(), H5P_DEFAULT);
    }
  }

  /// Overwrites a few values of a stored dataset (read and written as double; HDF5 converts).
  void poke_values(hid_t f) {
    if (datasets_.empty()) return;
    const std::string name = pick(datasets_);
    const hid_t d = H5Dopen2(f, name.c_str(), H5P_DEFAULT);
    if (d < 0) return;
    const hid_t space = H5Dget_space(d);
    const hssize_t n = H5Sget_simple_extent_npoints(space);
    const hid_t type = H5Dget_type(d);
    const H5T_class_t cls = H5Tget_class(type);
    if (n > 0 && n <= (1 << 20) && (cls == H5T_FLOAT || cls == H5T_INTEGER)) {
      std::vector<double> values(static_cast<size_t>(n));
      if (H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()) >= 0) {
        const int pokes = p_.ConsumeIntegralInRange(1, 4);
        for (int k = 0; k < pokes; ++k) {
          values[p_.ConsumeIntegralInRange<size_t>(0, values.size() - 1)] = any_double();
        }
        H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data());
      }
    }
    H5Tclose(type);
    H5Sclose(space);
    H5Dclose(d);
  }

  FuzzedDataProvider& p_;
  std::vector<std::string> keys_;
  std::vector<std::string> objects_;
  std::vector<std::string> datasets_;
};

/// Copies `seed` (a file or a folder) to work_dir() / `name` (replacing what was there) and returns
/// the copy's path.
inline std::filesystem::path fresh_copy(const std::filesystem::path& seed, const std::string& name) {
  const std::filesystem::path to = work_dir() / name;
  fs::remove_tree(to);
  if (std::filesystem::is_directory(seed)) {
    std::filesystem::copy(seed, to, std::filesystem::copy_options::recursive);
  } else {
    std::filesystem::copy_file(seed, to);
  }
  return to;
}

}  // namespace unidiff::fuzz
