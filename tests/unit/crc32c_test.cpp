// CRC-32C: the check value from the Castagnoli literature, and the hardware
// and portable implementations agreeing on every length and alignment.
#include "crc32c.h"

#include <random>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

namespace troy {
namespace {

std::span<const std::byte> bytes_of(std::string_view text) { return std::as_bytes(std::span(text)); }

TEST(Crc32c, CheckValue) { EXPECT_EQ(crc32c(bytes_of("123456789")), 0xE3069283u); }

TEST(Crc32c, EmptyInput) { EXPECT_EQ(crc32c({}), 0u); }

// RFC 3720 (iSCSI) B.4: 32 bytes of zeros and of 0xff.
TEST(Crc32c, Rfc3720Vectors) {
  std::vector<std::byte> zeros(32, std::byte{0});
  std::vector<std::byte> ones(32, std::byte{0xff});
  EXPECT_EQ(crc32c(zeros), 0x8A9136AAu);
  EXPECT_EQ(crc32c(ones), 0x62A8AB43u);
}

TEST(Crc32c, HardwareAndPortableAgree) {
  std::mt19937 random(7);
  std::vector<std::byte> data(4096 + 17);
  for (auto& b : data) b = std::byte(random() & 0xff);
  for (size_t start = 0; start < 9; start++)
    for (size_t length : {0, 1, 7, 8, 9, 63, 64, 65, 4096}) {
      const auto piece = std::span(data).subspan(start, length);
      EXPECT_EQ(detail::crc32c_update_hardware(0xFFFFFFFFu, piece), detail::crc32c_update_portable(0xFFFFFFFFu, piece))
          << "start " << start << " length " << length;
    }
}

TEST(Crc32c, ZeroedFieldEqualsCopyWithZeros) {
  std::vector<std::byte> data(4096, std::byte{0x5a});
  std::vector<std::byte> zeroed = data;
  std::fill(zeroed.begin() + 4, zeroed.begin() + 8, std::byte{0});
  EXPECT_EQ(crc32c_with_zeroed_field(data, 4), crc32c(zeroed));
}

}  // namespace
}  // namespace troy
