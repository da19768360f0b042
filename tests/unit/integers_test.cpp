#include "integers.h"

#include <cstring>

#include <gtest/gtest.h>

namespace troy {
namespace {

TEST(Integers, BigEndianStoresMostSignificantByteFirst) {
  ub32 value = 0x01020304u;
  uint8_t bytes[4];
  std::memcpy(bytes, &value, 4);
  EXPECT_EQ(bytes[0], 0x01);
  EXPECT_EQ(bytes[3], 0x04);
  EXPECT_EQ(uint32_t{value}, 0x01020304u);
}

TEST(Integers, LittleEndianStoresLeastSignificantByteFirst) {
  ul64 value = 0x0102030405060708ull;
  uint8_t bytes[8];
  std::memcpy(bytes, &value, 8);
  EXPECT_EQ(bytes[0], 0x08);
  EXPECT_EQ(bytes[7], 0x01);
  EXPECT_EQ(uint64_t{value}, 0x0102030405060708ull);
}

TEST(Integers, ReadsFromRawBytes) {
  const uint8_t raw[2] = {0xAB, 0xCD};
  ub16 big;
  ul16 little;
  std::memcpy(&big, raw, 2);
  std::memcpy(&little, raw, 2);
  EXPECT_EQ(uint16_t{big}, 0xABCD);
  EXPECT_EQ(uint16_t{little}, 0xCDAB);
}

}  // namespace
}  // namespace troy
