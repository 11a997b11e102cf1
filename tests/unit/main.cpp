// Unit test runner: one thread per test process keeps timings stable on small machines.
#include <gtest/gtest.h>
#include <torch/utils.h>

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  torch::set_num_threads(2);
  return RUN_ALL_TESTS();
}
