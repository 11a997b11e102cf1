// Helpers shared by the unit tests: a temporary folder removed at the end of each test.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <functional>

#include "core/error.h"
#include "core/fs.h"
#include "core/h5.h"
#include <string>
#include <torch/nn/module.h>

#include <vector>

#include "models/network.h"

/// Declares `const char* var` = the reference file named by environment variable `env` (written
/// by a PyTorch script that ctest runs as a fixture). Under ctest (UNIDIFF_REQUIRE_REFERENCES set)
/// a missing variable or file fails the test: a broken reference script must not pass as a skip.
/// Run by hand without the variable, the test is skipped.
#define UD_REFERENCE_FILE(var, env)                                                                   \
  const char* var = std::getenv(env);                                                                 \
  if (var == nullptr || !std::filesystem::exists(var)) {                                              \
    if (std::getenv("UNIDIFF_REQUIRE_REFERENCES") != nullptr) {                                       \
      FAIL() << env << (var == nullptr ? " is not set" : " names a missing file")                     \
             << ": the reference script (tests/reference/) did not run or failed";                    \
    }                                                                                                  \
    GTEST_SKIP() << env << " not set (ctest sets it)";                                                \
  }

namespace unidiff::testing {

class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = std::filesystem::temp_directory_path() /
            ("unidiff-test-" + std::to_string(getpid()) + "-" + info->test_suite_name() + "-" +
             info->name());
    unidiff::fs::remove_tree(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { unidiff::fs::remove_tree(path_); }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

/// A small UNet for tests: base width 32, two levels (1, 2), one block per level, self-attention
/// at resolution `attn` (none when 0), the given dropout.
inline models::NetworkConfig small_unet_config(std::vector<int64_t> data_shape, int64_t attn, double dropout = 0.1) {
  models::NetworkConfig c;
  c.arch = "unet";
  c.data_shape = std::move(data_shape);
  c.channels = 32;
  c.channel_mult = {1, 2};
  c.res_blocks = 1;
  c.attn_res = attn > 0 ? std::vector<int64_t>{attn} : std::vector<int64_t>{};
  c.dropout = dropout;
  return c;
}

/// The message of the InputError `f` throws, or "(no error)".
inline std::string input_error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no error)";
}

/// Number of parameter elements of a module.
inline int64_t count_parameters(const torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

/// Copies every parameter of `net` from `group`/<name> of a reference file written by a PyTorch
/// script (state-dict names one to one); fails the test on a missing tensor or on reference
/// tensors the network does not have.
inline void load_reference_params(torch::nn::Module& net, const h5::File& f, const std::string& group) {
  torch::NoGradGuard no_grad;
  int64_t loaded = 0;
  for (auto& param : net.named_parameters()) {
    const std::string name = group + "/" + param.key();
    ASSERT_TRUE(f.has(name)) << "the reference has no " << name;
    param.value().copy_(h5::read_tensor(f, name));
    ++loaded;
  }
  EXPECT_EQ(loaded, static_cast<int64_t>(h5::list_datasets(f, group).size()));
}

}  // namespace unidiff::testing
