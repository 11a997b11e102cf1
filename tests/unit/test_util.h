// Helpers shared by the unit tests: a temporary folder removed at the end of each test.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "core/fs.h"
#include <string>

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

}  // namespace unidiff::testing
