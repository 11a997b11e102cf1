// The safetensors reader and writer (core/safetensors.h): the byte layout of the format's
// specification (8-byte little-endian header length, JSON header padded to 8 bytes, tensors in
// offset order), a round trip of every dtype, and hostile headers refused with the field named.
// (That the real safetensors/diffusers packages read our files is tests/interop/diffusers_test.py.)
#include <gtest/gtest.h>

#include <cstring>

#include "core/error.h"
#include "core/safetensors.h"
#include "test_util.h"

namespace unidiff::safetensors {
namespace {

using testing::input_error_of;

/// A file made of a header text and a buffer of `buffer` zero bytes.
std::string file_of(const std::string& header, size_t buffer) {
  std::string out(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  return out + header + std::string(buffer, '\0');
}

std::string error_of(const std::string& bytes) {
  return input_error_of([&] { parse(bytes, "f"); });
}

TEST(Safetensors, LayoutFollowsTheSpecification) {
  const torch::Tensor a = torch::arange(6, torch::kFloat32).reshape({2, 3});
  const torch::Tensor b = torch::tensor({1, 2}, torch::kInt64);
  const std::string bytes = serialize({{"b", b}, {"a", a}}, {{"format", "pt"}});
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u) << "the header is padded to a multiple of 8";
  const std::string header = bytes.substr(8, n);
  // Names in sorted order, offsets into the buffer after the header, metadata first.
  EXPECT_EQ(header.substr(0, header.find_last_not_of(' ') + 1),
            R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
            R"("b":{"dtype":"I64","shape":[2],"data_offsets":[24,40]}})");
  ASSERT_EQ(bytes.size(), 8 + n + 40);
  float first[6];
  std::memcpy(first, bytes.data() + 8 + n, sizeof(first));
  EXPECT_EQ(first[5], 5.0f);
}

TEST(Safetensors, EveryDtypeRoundTripsBitForBit) {
  torch::manual_seed(0);
  std::vector<std::pair<std::string, torch::Tensor>> in = {
      {"f64", torch::randn({3, 2}, torch::kFloat64)},
      {"f32", torch::randn({4}, torch::kFloat32)},
      {"f16", torch::randn({2, 2}).to(torch::kFloat16)},
      {"bf16", torch::randn({5}).to(torch::kBFloat16)},
      {"i64", torch::tensor({int64_t{-1}, int64_t{1} << 40})},
      {"i32", torch::tensor({-7, 9}, torch::kInt32)},
      {"i16", torch::tensor({-3}, torch::kInt16)},
      {"i8", torch::tensor({-128, 127}, torch::kInt8)},
      {"u8", torch::tensor({0, 255}, torch::kUInt8)},
      {"bool", torch::tensor({true, false, true})},
      {"empty", torch::zeros({0, 3})},
      {"scalar", torch::tensor(2.5)},
      {"strided", torch::arange(12, torch::kFloat32).reshape({3, 4}).t()},
  };
  const File out = parse(serialize(in, {{"k", "v"}}), "x");
  EXPECT_EQ(out.metadata.at("k"), "v");
  ASSERT_EQ(out.tensors.size(), in.size());
  for (const auto& [name, t] : in) {
    const torch::Tensor got = out.find(name);
    ASSERT_TRUE(got.defined()) << name;
    EXPECT_EQ(got.scalar_type(), t.scalar_type()) << name;
    EXPECT_EQ(got.sizes(), t.sizes()) << name;
    EXPECT_TRUE(torch::equal(got, t)) << name;
  }
}

TEST(Safetensors, WritesAtomicallyAndReadsBack) {
  testing::TempDir dir;
  const auto path = dir / "w.safetensors";
  write(path, {{"x", torch::ones({3})}});
  EXPECT_TRUE(torch::equal(read(path).find("x"), torch::ones({3})));
  EXPECT_NE(input_error_of([&] { read(dir / "missing.safetensors"); }).find("cannot read"), std::string::npos);
}

TEST(Safetensors, HostileHeadersAreRefusedNamingTheProblem) {
  const std::string ok = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  EXPECT_EQ(error_of(file_of(ok, 8)), "(no error)");
  EXPECT_NE(error_of("abc").find("too short"), std::string::npos);
  std::string huge(16, '\0');
  const uint64_t big = uint64_t{1} << 62;
  std::memcpy(huge.data(), &big, 8);
  EXPECT_NE(error_of(huge).find("exceeds the 100 MiB limit"), std::string::npos);
  EXPECT_NE(error_of(file_of(ok, 8).substr(0, 20)).find("truncated"), std::string::npos);
  EXPECT_NE(error_of(file_of("[1]", 0)).find("not a JSON object"), std::string::npos);
  EXPECT_NE(error_of(file_of("{\"a\": ", 0)).find("not valid JSON"), std::string::npos);
  EXPECT_NE(error_of(file_of("{\"a\":" + std::string(100, '[') + std::string(100, ']') + "}", 0))
                .find("nests deeper than 64"),
            std::string::npos);
  const auto refused = [&](const std::string& header, size_t buffer, const std::string& expected) {
    const std::string e = error_of(file_of(header, buffer));
    EXPECT_NE(e.find(expected), std::string::npos) << header << "\n -> " << e;
  };
  refused(R"({"a":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})", 2, "dtype 'F8_E4M3'");
  refused(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8, "shape entry that is not a non-negative");
  refused(R"({"a":{"dtype":"F32","shape":"2","data_offsets":[0,8]}})", 8, "shape that is not a list");
  refused(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}})", 8, "overflows");
  refused(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8,9]}})", 8, "not [begin, end]");
  refused(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8, "outside the 8-byte buffer");
  refused(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}})", 8, "outside the 8-byte buffer");
  refused(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8, "spans 8 bytes but its F32 shape [3] needs 12");
  refused(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],)"
          R"("data_offsets":[4,12]}})",
          12, "overlaps");
  refused(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8, "hole of 4 bytes before tensor 'a'");
  refused(ok, 12, "4 bytes after its last tensor");
  refused(R"({"a":{"dtype":"F32","shape":[2]}})", 8, "tensor 'a' has no data_offsets");
  refused(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}})", 8, "unknown field 'x'");
  refused(R"({"__metadata__":{"k":1},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8,
          "__metadata__ value of 'k' is not a string");
  refused(R"({"a":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}})", 0, "outside");
  std::string bools = file_of(R"({"a":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}})", 2);
  bools.back() = 7;
  EXPECT_NE(error_of(bools).find("bytes other than 0 and 1"), std::string::npos);
  // Duplicate keys: nlohmann keeps the last; the earlier one's bytes are then a hole or overlap.
  refused(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[1],)"
          R"("data_offsets":[8,12]}})",
          12, "hole");
}

}  // namespace
}  // namespace unidiff::safetensors
