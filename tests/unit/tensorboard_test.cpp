// The TFRecord framing of TensorBoard event files (core/tensorboard.h): CRC-32C against its
// published check value (RFC 3720, appendix B.4: "123456789" -> 0xE3069283) and the masked form.
// The files themselves are read back by tensorboard's reader in tests/cli/tensorboard_test.py.
#include <gtest/gtest.h>

#include <string>

#include "core/tensorboard.h"

namespace unidiff::tensorboard {
namespace {

TEST(Crc32c, MatchesThePublishedCheckValue) {
  const std::string s = "123456789";
  EXPECT_EQ(crc32c(s.data(), s.size()), 0xE3069283u);
  EXPECT_EQ(crc32c(nullptr, 0), 0u);
  // 32 zero bytes: RFC 3720 B.4 gives 0x8A9136AA.
  const std::string zeros(32, '\0');
  EXPECT_EQ(crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);
}

TEST(Crc32c, MaskRotatesAndAddsTheConstant) {
  // ((crc >> 15) | (crc << 17)) + 0xa282ead8, by hand for crc = 1: (1 << 17) + 0xa282ead8.
  EXPECT_EQ(masked_crc(1u), 0x00020000u + 0xa282ead8u);
  EXPECT_EQ(masked_crc(0u), 0xa282ead8u);
}

}  // namespace
}  // namespace unidiff::tensorboard
