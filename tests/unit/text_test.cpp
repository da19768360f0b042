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

TEST(Printable, KeepsOrdinaryTextAndWindowsPaths) {
  EXPECT_EQ(printable("..\\base.vhdx"), "..\\base.vhdx");
  EXPECT_EQ(printable("C:\\VMs\\Grundschule \xC3\xA4\xE2\x82\xAC.vhdx"), "C:\\VMs\\Grundschule \xC3\xA4\xE2\x82\xAC.vhdx");
  EXPECT_EQ(printable("\xF0\x9F\x98\x80"), "\xF0\x9F\x98\x80");  // a 4-byte sequence
}

TEST(Printable, EscapesEveryControlCharacter) {
  EXPECT_EQ(printable("a\x1b[2Jb"), "a\\x1b[2Jb");
  EXPECT_EQ(printable("one\r\ntwo"), "one\\x0d\\x0atwo");
  EXPECT_EQ(printable(std::string("\x07\x00\x09\x7f", 4)), "\\x07\\x00\\x09\\x7f");
  EXPECT_EQ(printable("\xC2\x9B" "31m"), "\\u009b31m");          // C1 CSI, encoded in UTF-8
  EXPECT_EQ(printable("x\xE2\x80\xAEy"), "x\\u202ey");           // RIGHT-TO-LEFT OVERRIDE
  EXPECT_EQ(printable("x\xE2\x80\xA8y"), "x\\u2028y");           // LINE SEPARATOR
  for (int c = 0; c < 0x20; c++) EXPECT_EQ(printable(std::string(1, static_cast<char>(c))).substr(0, 2), "\\x") << c;
}

TEST(Printable, EscapesBytesThatAreNotUtf8) {
  EXPECT_EQ(printable("x\xffy"), "x\\xffy");
  EXPECT_EQ(printable("\x9b"), "\\x9b");                // a raw C1 byte: CSI on an 8-bit terminal
  EXPECT_EQ(printable("\xC3"), "\\xc3");                // cut short at the end
  EXPECT_EQ(printable("\xE2\x82"), "\\xe2\\x82");
  EXPECT_EQ(printable("\xC0\xAF"), "\\xc0\\xaf");      // overlong
  EXPECT_EQ(printable("\xED\xA0\x80"), "\\xed\\xa0\\x80");  // a surrogate
}

}  // namespace
}  // namespace troy
