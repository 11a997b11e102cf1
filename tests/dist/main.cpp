// Runner of the distributed tests: started under mpirun with 1, 2 or 3 ranks; only rank 0 prints
// gtest's progress, every rank's result counts (mpirun fails if any rank fails).
#include <gtest/gtest.h>
#include <torch/utils.h>

#include "core/memory.h"
#include "dist/world.h"

int main(int argc, char** argv) {
  unidiff::memory::keep_freed_pages();
  unidiff::dist::init(&argc, &argv);
  testing::InitGoogleTest(&argc, argv);
  torch::set_num_threads(1);
  if (unidiff::dist::rank() != 0) {
    auto& listeners = testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  const int rc = RUN_ALL_TESTS();
  unidiff::dist::finalize();
  return rc;
}
