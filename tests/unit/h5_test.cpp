// HDF5 tensor I/O: round trips of every stored dtype, attributes, row reads, clear errors for
// missing or foreign files, and atomic writes that never damage an existing file.
#include <gtest/gtest.h>

#include <fstream>

#include "core/error.h"
#include "core/h5.h"
#include "test_util.h"

namespace unidiff::h5 {
namespace {

TEST(H5, RoundTripsEveryDtypeAndAttributes) {
  testing::TempDir dir;
  const auto path = dir / "t.h5";
  const torch::Tensor f32 = torch::randn({4, 3});
  const torch::Tensor f64 = torch::randn({2, 2, 2}, torch::kFloat64);
  const torch::Tensor i64 = torch::arange(10, torch::kInt64);
  const torch::Tensor u8 = torch::randint(0, 255, {2, 1, 3, 3}, torch::kUInt8);
  {
    File f = File::create(path);
    write_tensor(f, "/a/f32", f32);
    write_tensor(f, "/a/b/f64", f64);
    write_tensor(f, "/i64", i64, 3);
    write_tensor(f, "/u8", u8);
    write_attr(f, "/", "name", std::string("hello"));
    write_attr(f, "/a", "count", int64_t{42});
    write_attr(f, "/i64", "scale", 0.25);
  }
  const File f = File::open_read(path);
  EXPECT_TRUE(torch::equal(read_tensor(f, "/a/f32"), f32));
  EXPECT_TRUE(torch::equal(read_tensor(f, "/a/b/f64"), f64));
  EXPECT_TRUE(torch::equal(read_tensor(f, "/i64"), i64));
  EXPECT_TRUE(torch::equal(read_tensor(f, "/u8"), u8));
  EXPECT_TRUE(torch::equal(read_rows(f, "/i64", 4, 3), torch::tensor({4, 5, 6}, torch::kInt64)));
  EXPECT_EQ(read_attr_string(f, "/", "name"), "hello");
  EXPECT_EQ(read_attr_int(f, "/a", "count"), 42);
  EXPECT_EQ(read_attr_double(f, "/i64", "scale"), 0.25);
  EXPECT_FALSE(read_attr_int(f, "/", "absent").has_value());
  EXPECT_TRUE(f.has("/a/b/f64"));
  EXPECT_FALSE(f.has("/a/nothing/here"));
  EXPECT_EQ(list_datasets(f), (std::vector<std::string>{"/a/b/f64", "/a/f32", "/i64", "/u8"}));
  EXPECT_EQ(list_datasets(f, "/a"), (std::vector<std::string>{"/a/b/f64", "/a/f32"}));
}

TEST(H5, MissingAndForeignFilesAreInputErrorsNamingThePath) {
  testing::TempDir dir;
  const auto missing = dir / "missing.h5";
  try {
    File::open_read(missing);
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("missing.h5"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("does not exist"), std::string::npos) << e.what();
  }
  const auto text = dir / "text.h5";
  std::ofstream(text) << "not hdf5 at all";
  try {
    File::open_read(text);
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("not an HDF5 file"), std::string::npos) << e.what();
  }
}

TEST(H5, FailedAtomicWriteLeavesTheOldFileIntact) {
  testing::TempDir dir;
  const auto path = dir / "model.h5";
  write_atomically(path, [](File& f) { write_tensor(f, "/x", torch::ones({3})); });
  EXPECT_THROW(write_atomically(path,
                                [](File& f) {
                                  write_tensor(f, "/x", torch::zeros({3}));
                                  throw std::runtime_error("disk full (simulated)");
                                }),
               std::runtime_error);
  const File f = File::open_read(path);
  EXPECT_TRUE(torch::equal(read_tensor(f, "/x"), torch::ones({3})));
  // No temporary file is left behind.
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 1);
}

}  // namespace
}  // namespace unidiff::h5
