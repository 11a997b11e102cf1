// Dataset loading: the layout of DESIGN.md, shards read as one, and each kind of bad input
// rejected with an InputError that names the file and the problem.
#include <gtest/gtest.h>

#include <fstream>

#include "core/error.h"
#include "core/h5.h"
#include "data/dataset.h"
#include "test_util.h"

namespace unidiff::data {
namespace {

std::string load_error(const std::string& spec) {
  try {
    TensorDataset::load(spec);
  } catch (const InputError& e) {
    return e.what();
  }
  return "no error";
}

void write_raw(const std::filesystem::path& path, const std::string& name, const torch::Tensor& t) {
  h5::File f = h5::File::create(path);
  h5::write_tensor(f, name, t);
}

TEST(Dataset, ImagesMapToMinusOneOneAndLabelsLoad) {
  testing::TempDir dir;
  const torch::Tensor img = torch::tensor({0, 255, 51, 204}, torch::kUInt8).view({1, 1, 2, 2});
  write_dataset(dir / "img.h5", img, torch::tensor({3}, torch::kInt64), 10);
  const TensorDataset ds = TensorDataset::load((dir / "img.h5").string());
  EXPECT_TRUE(ds.is_image());
  EXPECT_EQ(ds.num_classes(), 10);
  // 0 -> -1, 255 -> 1, 51 -> 51/127.5 - 1 = -0.6, 204 -> 0.6.
  const torch::Tensor expect = torch::tensor({-1.0f, 1.0f, -0.6f, 0.6f}).view({1, 1, 2, 2});
  EXPECT_TRUE(torch::allclose(ds.all(), expect, 1e-6, 1e-6));
  const Batch b = ds.get(torch::tensor({0}, torch::kInt64));
  EXPECT_EQ(b.labels.item<int64_t>(), 3);
}

TEST(Dataset, ShardFilesReadAsOneDatasetInOrder) {
  testing::TempDir dir;
  write_dataset(dir / "part-0.h5", torch::arange(6, torch::kFloat32).view({3, 2}));
  write_dataset(dir / "part-1.h5", torch::arange(6, 10, torch::kFloat32).view({2, 2}));
  const TensorDataset glob = TensorDataset::load((dir / "part-*.h5").string());
  EXPECT_EQ(glob.size(), 5);
  EXPECT_TRUE(torch::equal(glob.all().flatten(), torch::arange(10, torch::kFloat32)));
  const TensorDataset list =
      TensorDataset::load((dir / "part-1.h5").string() + "," + (dir / "part-0.h5").string());
  EXPECT_EQ(list.all()[0][0].item<float>(), 6.0f);
}

TEST(Dataset, StreamingReadsEqualInMemoryReads) {
  testing::TempDir dir;
  const torch::Tensor img = torch::randint(0, 256, {50, 1, 3, 3}, torch::kUInt8);
  const torch::Tensor lab = torch::randint(0, 4, {50}, torch::kInt64);
  write_dataset_shards(dir / "img.h5", img, lab, 4, "test", 3);
  const std::string spec = (dir / "img-*.h5").string();
  const TensorDataset mem = TensorDataset::load(spec);
  const TensorDataset str = TensorDataset::open_streaming(spec);
  EXPECT_TRUE(str.is_streaming() && str.is_image());
  EXPECT_EQ(str.size(), 50);
  EXPECT_EQ(str.num_classes(), 4);
  // Unsorted, crossing shard boundaries (16 | 17 | 17 rows), with runs and a repeat.
  const torch::Tensor idx = torch::tensor({40, 3, 4, 5, 15, 16, 17, 49, 0, 4}, torch::kInt64);
  const Batch a = mem.get(idx), b = str.get(idx);
  EXPECT_TRUE(torch::equal(a.x, b.x));
  EXPECT_TRUE(torch::equal(a.labels, b.labels));
  EXPECT_TRUE(torch::equal(b.index, idx));
  EXPECT_TRUE(torch::equal(str.all(), mem.all()));
}

TEST(Dataset, RawBatchesKeepUint8AndDecodeMatches) {
  testing::TempDir dir;
  const torch::Tensor img = torch::randint(0, 256, {12, 3, 4, 4}, torch::kUInt8);
  write_dataset(dir / "img.h5", img);
  const torch::Tensor idx = torch::tensor({7, 0, 11}, torch::kInt64);
  for (const bool stream : {false, true}) {
    const std::string spec = (dir / "img.h5").string();
    const TensorDataset ds = stream ? TensorDataset::open_streaming(spec) : TensorDataset::load(spec);
    const Batch raw = ds.get_raw(idx);
    EXPECT_EQ(raw.x.scalar_type(), torch::kUInt8);
    EXPECT_TRUE(torch::equal(raw.x, img.index_select(0, idx)));
    // decode: x / 127.5 - 1, computed here in float64 from the stored bytes.
    const torch::Tensor expect = img.index_select(0, idx).to(torch::kFloat64) / 127.5 - 1.0;
    EXPECT_TRUE(torch::allclose(ds.get(idx).x.to(torch::kFloat64), expect, 0, 1e-6));
  }
}

TEST(Dataset, ChunkedFilesStreamThroughHdf5LikeMappedOnes) {
  // write_dataset stores /data contiguously (read straight from the mapped file); a chunked file
  // written by another tool takes the HDF5 path. Both must give the same rows.
  testing::TempDir dir;
  const torch::Tensor x = torch::randn({40, 3});
  write_dataset(dir / "flat.h5", x);
  {
    h5::File f = h5::File::create(dir / "chunked.h5");
    h5::write_tensor(f, "/data", x, /*chunk_rows=*/7);
  }
  EXPECT_TRUE(h5::raw_extent(h5::File::open_read(dir / "flat.h5"), "/data").has_value());
  EXPECT_FALSE(h5::raw_extent(h5::File::open_read(dir / "chunked.h5"), "/data").has_value());
  const TensorDataset flat = TensorDataset::open_streaming((dir / "flat.h5").string());
  const TensorDataset chunked = TensorDataset::open_streaming((dir / "chunked.h5").string());
  const torch::Tensor idx = torch::tensor({39, 2, 3, 4, 20, 3, 0}, torch::kInt64);
  EXPECT_TRUE(torch::equal(flat.get(idx).x, x.index_select(0, idx)));
  EXPECT_TRUE(torch::equal(chunked.get(idx).x, x.index_select(0, idx)));
}

TEST(Dataset, StreamingRefusesATruncatedFile) {
  testing::TempDir dir;
  write_dataset(dir / "full.h5", torch::randint(0, 256, {2000, 1, 8, 8}, torch::kUInt8));
  std::filesystem::copy_file(dir / "full.h5", dir / "cut.h5");
  std::filesystem::resize_file(dir / "cut.h5", std::filesystem::file_size(dir / "full.h5") - 100);
  try {
    TensorDataset::open_streaming((dir / "cut.h5").string());
    ADD_FAILURE() << "a truncated file was accepted";
  } catch (const InputError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("cut.h5"), std::string::npos) << msg;
    EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
  }
}

TEST(Dataset, StreamingFindsNonFiniteValuesWhenReading) {
  testing::TempDir dir;
  torch::Tensor x = torch::zeros({20, 2});
  x[13][1] = std::numeric_limits<float>::infinity();
  write_dataset(dir / "inf.h5", x);
  const TensorDataset ds = TensorDataset::open_streaming((dir / "inf.h5").string());
  EXPECT_NO_THROW(ds.get(torch::tensor({1, 2, 3}, torch::kInt64)));
  EXPECT_THROW(ds.get(torch::tensor({12, 13}, torch::kInt64)), InputError);
}

TEST(Dataset, BadInputsNameTheProblem) {
  testing::TempDir dir;
  EXPECT_NE(load_error((dir / "nope.h5").string()).find("does not exist"), std::string::npos);
  std::ofstream(dir / "text.h5") << "hello";
  EXPECT_NE(load_error((dir / "text.h5").string()).find("not an HDF5 file"), std::string::npos);
  write_raw(dir / "nodata.h5", "/other", torch::zeros({3, 2}));
  EXPECT_NE(load_error((dir / "nodata.h5").string()).find("has no /data"), std::string::npos);
  write_raw(dir / "int.h5", "/data", torch::zeros({3, 2}, torch::kInt32));
  EXPECT_NE(load_error((dir / "int.h5").string()).find("unsupported type int32"), std::string::npos);
  write_raw(dir / "empty.h5", "/data", torch::zeros({0, 2}));
  EXPECT_NE(load_error((dir / "empty.h5").string()).find("no samples"), std::string::npos);
  torch::Tensor nan = torch::zeros({4, 2});
  nan[2][1] = std::numeric_limits<float>::quiet_NaN();
  write_raw(dir / "nan.h5", "/data", nan);
  const std::string nan_msg = load_error((dir / "nan.h5").string());
  EXPECT_NE(nan_msg.find("non-finite"), std::string::npos) << nan_msg;
  EXPECT_NE(nan_msg.find("index 2"), std::string::npos) << nan_msg;
  write_raw(dir / "vec.h5", "/data", torch::zeros({4}));
  EXPECT_NE(load_error((dir / "vec.h5").string()).find("at least 2 dimensions"), std::string::npos);
  write_dataset(dir / "a.h5", torch::zeros({2, 2}));
  write_dataset(dir / "b.h5", torch::zeros({2, 3}));
  EXPECT_NE(load_error((dir / "a.h5").string() + "," + (dir / "b.h5").string()).find("shape"),
            std::string::npos);
  EXPECT_NE(load_error((dir / "zzz-*.h5").string()).find("no file matches"), std::string::npos);
  {
    h5::File f = h5::File::create(dir / "labels.h5");
    h5::write_tensor(f, "/data", torch::zeros({3, 2}));
    h5::write_tensor(f, "/labels", torch::zeros({2}, torch::kInt64));
  }
  EXPECT_NE(load_error((dir / "labels.h5").string()).find("/labels must be [N]"), std::string::npos);
  // A file cut short (a copy interrupted mid-way): the data no longer fits in the file.
  write_dataset(dir / "full.h5", torch::rand({4000, 8}));
  const auto size = std::filesystem::file_size(dir / "full.h5");
  std::filesystem::copy_file(dir / "full.h5", dir / "cut.h5");
  std::filesystem::resize_file(dir / "cut.h5", size / 2);
  const std::string cut = load_error((dir / "cut.h5").string());
  EXPECT_TRUE(cut.find("truncated") != std::string::npos || cut.find("damaged") != std::string::npos)
      << cut;
}

}  // namespace
}  // namespace unidiff::data
