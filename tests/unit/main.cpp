// Unit test runner: LibTorch's threads from OMP_NUM_THREADS where set (ctest sets it to the cores
// it counts the test as using), else 2.
#include <gtest/gtest.h>
#include <torch/utils.h>

#include <cstdlib>

#include "core/memory.h"

int main(int argc, char** argv) {
  unidiff::memory::keep_freed_pages();
  testing::InitGoogleTest(&argc, argv);
  if (std::getenv("OMP_NUM_THREADS") == nullptr) torch::set_num_threads(2);
  return RUN_ALL_TESTS();
}
