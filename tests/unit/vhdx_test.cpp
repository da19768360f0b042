// Unit tests of VHDX details: GUID text in Microsoft's mixed-endian layout,
// and the replay overlay's order and file extension. Whole images are built
// by the independent writer (fixtures/make_vhdx.py) in the end-to-end cases.
#include "vhdx.h"

#include <cstring>

#include <gtest/gtest.h>

#include "vhdx_log.h"

namespace troy::vhdx {
namespace {

TEST(VhdxGuid, TextAndStoredBytes) {
  // The BAT region GUID as [MS-VHDX] prints it and as it is stored.
  const auto guid = guid_from_text("2DC27766-F623-4200-9D64-115E9BFD4A08");
  ASSERT_TRUE(guid);
  const Guid stored = {0x66, 0x77, 0xc2, 0x2d, 0x23, 0xf6, 0x00, 0x42,
                       0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd, 0x4a, 0x08};
  EXPECT_EQ(*guid, stored);
  EXPECT_EQ(guid_to_text(stored), "2dc27766-f623-4200-9d64-115e9bfd4a08");
}

TEST(VhdxGuid, BracesAndRejects) {
  EXPECT_TRUE(guid_from_text("{2dc27766-f623-4200-9d64-115e9bfd4a08}"));
  EXPECT_FALSE(guid_from_text("2dc27766-f623-4200-9d64-115e9bfd4a0"));
  EXPECT_FALSE(guid_from_text("2dc27766xf623-4200-9d64-115e9bfd4a08"));
  EXPECT_FALSE(guid_from_text("2dc27766-f623-4200-9d64-115e9bfd4a0g"));
  EXPECT_FALSE(guid_from_text("{2dc27766-f623-4200-9d64-115e9bfd4a08"));
}

std::unique_ptr<Source> memory(size_t size, uint8_t fill) {
  return std::make_unique<MemorySource>("mem", std::vector<std::byte>(size, std::byte{fill}));
}

TEST(ReplayedSource, LaterWritesWinAndZerosApply) {
  LogReplay replay;
  replay.needed = true;
  replay.writes.push_back({4096, 4096, std::vector<std::byte>(4096, std::byte{1})});
  replay.writes.push_back({4096, 8192, {}});  // zero descriptor over it
  replay.writes.push_back({8192, 4096, std::vector<std::byte>(4096, std::byte{2})});
  ReplayedSource source(memory(16384, 0xee), std::move(replay));
  std::vector<std::byte> out(16384);
  ASSERT_TRUE(source.read_at(0, out).ok());
  EXPECT_EQ(out[4095], std::byte{0xee});
  EXPECT_EQ(out[4096], std::byte{0});
  EXPECT_EQ(out[8191], std::byte{0});
  EXPECT_EQ(out[8192], std::byte{2});
  EXPECT_EQ(out[12288], std::byte{0xee});
}

TEST(ReplayedSource, ExtendsToLastFileOffsetWithZeros) {
  LogReplay replay;
  replay.needed = true;
  replay.last_file_offset = 3 * 4096;
  ReplayedSource source(memory(4096, 0xee), std::move(replay));
  EXPECT_EQ(source.size(), 3u * 4096);
  std::vector<std::byte> out(8192);
  ASSERT_TRUE(source.read_at(2048, out).ok());
  EXPECT_EQ(out[2047], std::byte{0xee});
  EXPECT_EQ(out[2048], std::byte{0});
  EXPECT_FALSE(source.read_at(3 * 4096, std::span(out).first(1)).ok());
}

TEST(VhdxProbe, NeedsTheFileTypeIdentifier) {
  std::vector<std::byte> bytes(1024);
  std::memcpy(bytes.data(), "vhdxfile", 8);
  EXPECT_TRUE(probe(MemorySource("a", bytes)));
  bytes[0] = std::byte{'V'};
  EXPECT_FALSE(probe(MemorySource("b", bytes)));
}

}  // namespace
}  // namespace troy::vhdx
