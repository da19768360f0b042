#include "text.h"

#include <vector>

#include <gtest/gtest.h>

namespace troy {
namespace {

std::vector<std::byte> bytes(std::initializer_list<int> values) {
  std::vector<std::byte> out;
  for (int v : values) out.push_back(static_cast<std::byte>(v));
  return out;
}

TEST(Utf16, DecodesBothByteOrdersAndStopsAtNul) {
  EXPECT_EQ(utf16_to_utf8(bytes({0, 'a', 0, 'b', 0, 0, 0, 'c'}), true), "ab");
  EXPECT_EQ(utf16_to_utf8(bytes({'a', 0, 'b', 0}), false), "ab");
}

TEST(Utf16, DecodesSurrogatePairsAndReplacesLoneSurrogates) {
  // U+1F600 = D83D DE00; then a lone high surrogate D800, then 'x'.
  EXPECT_EQ(utf16_to_utf8(bytes({0x3D, 0xD8, 0x00, 0xDE, 0x00, 0xD8, 'x', 0}), false), "\xF0\x9F\x98\x80\xEF\xBF\xBDx");
}

TEST(Text, AllZero) {
  std::vector<std::byte> buffer(1001);
  EXPECT_TRUE(all_zero(buffer));
  buffer[1000] = std::byte{1};
  EXPECT_FALSE(all_zero(buffer));
  buffer[1000] = std::byte{0};
  buffer[3] = std::byte{1};
  EXPECT_FALSE(all_zero(buffer));
}

TEST(Text, HumanBytes) {
  EXPECT_EQ(human_bytes(512), "512 bytes");
  EXPECT_EQ(human_bytes(3 << 20), "3.0 MiB (3145728 bytes)");
}

}  // namespace
}  // namespace troy
