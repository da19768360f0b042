// Unit tests of the VHD driver on images built in memory, one quirk each.
// (End-to-end tests compare against outside readers; these pin down details.)
#include "vhd.h"

#include <cstring>

#include <gtest/gtest.h>

#include "image.h"
#include "text.h"
#include "vhd_format.h"

namespace troy {
namespace {

constexpr uint64_t kBlock = 4096;  // 8 sectors: one bitmap byte per block

// A dynamic or differencing VHD of `blocks` blocks, block i allocated with
// bitmap byte bitmaps[i] when bitmaps[i] >= 0.
struct TestImage {
  std::vector<std::byte> bytes;
  vhd::Footer footer{};
  vhd::DynamicHeader header{};

  TestImage(uint32_t type, const std::vector<int>& bitmaps) {
    const uint64_t table = 1536, data = 2048;
    footer = make_footer(type, bitmaps.size() * kBlock);
    std::memcpy(header.cookie, "cxsparse", 8);
    header.data_offset = ~0ull;
    header.table_offset = table;
    header.header_version = 0x00010000;
    header.max_table_entries = static_cast<uint32_t>(bitmaps.size());
    header.block_size = kBlock;
    bytes.resize(data);
    std::vector<ub32> bat(bitmaps.size(), ub32(vhd::kUnallocated));
    for (size_t i = 0; i < bitmaps.size(); i++) {
      if (bitmaps[i] < 0) continue;
      bat[i] = static_cast<uint32_t>(bytes.size() / 512);
      std::vector<std::byte> block(512 + kBlock, std::byte{static_cast<uint8_t>(0x10 + i)});
      std::fill(block.begin(), block.begin() + 512, std::byte{0});
      block[0] = static_cast<std::byte>(bitmaps[i]);
      bytes.insert(bytes.end(), block.begin(), block.end());
    }
    std::memcpy(bytes.data() + table, bat.data(), bat.size() * 4);
    bytes.resize(bytes.size() + 512);
    seal();
  }

  static vhd::Footer make_footer(uint32_t type, uint64_t size) {
    vhd::Footer f{};
    std::memcpy(f.cookie, "conectix", 8);
    f.features = 2;
    f.file_format_version = 0x00010000;
    f.data_offset = 512;
    f.current_size = size;
    f.original_size = size;
    f.disk_type = type;
    f.unique_id[0] = 0xAB;
    return f;
  }

  // Recomputes the checksums and writes footer copies and header in place.
  void seal() {
    header.checksum = vhd::checksum(std::as_bytes(std::span(&header, 1)), 36);
    footer.checksum = vhd::checksum(std::as_bytes(std::span(&footer, 1)), 64);
    std::memcpy(bytes.data(), &footer, 512);
    std::memcpy(bytes.data() + 512, &header, 1024);
    std::memcpy(bytes.data() + bytes.size() - 512, &footer, 512);
  }

  Result<std::unique_ptr<Layer>> open(Diagnostics& diagnostics, bool ignore_checksums = false) const {
    OpenOptions options{ignore_checksums, &diagnostics};
    return open_layer(std::make_unique<MemorySource>("test.vhd", bytes), options);
  }
};

std::vector<Extent> extents_of(const Layer& layer) {
  std::vector<Extent> out;
  EXPECT_TRUE(layer.extents(0, layer.virtual_size(), out).ok());
  return out;
}

TEST(VhdChecksum, IsOnesComplementOfByteSumSkippingTheField) {
  std::vector<std::byte> bytes(8, std::byte{1});
  bytes[4] = std::byte{0xFF};  // inside the checksum field: not counted
  EXPECT_EQ(vhd::checksum(bytes, 4), ~uint32_t{4});
}

TEST(VhdBitmap, IsMostSignificantBitFirst) {
  Diagnostics diagnostics;
  TestImage image(vhd::kDifferencing, {0x80, 0x01, 0xCB});
  auto layer = image.open(diagnostics);
  ASSERT_TRUE(layer.ok()) << layer.error().message;
  const std::vector<Extent> extents = extents_of(**layer);
  // 0x80: sector 0 of block 0; 0x01: sector 7 of block 1; 0xCB = 11001011:
  // sectors 0-1, 4, 6-7 of block 2.
  ASSERT_EQ(extents.size(), 4u);
  EXPECT_EQ(extents[0].offset, 0u);
  EXPECT_EQ(extents[0].length, 512u);
  EXPECT_EQ(extents[1].offset, kBlock + 7 * 512);
  // Sector 7 of block 1 and sectors 0-1 of block 2 touch: one extent.
  EXPECT_EQ(extents[1].length, 3 * 512u);
  EXPECT_EQ(extents[2].offset, 2 * kBlock + 4 * 512);
  EXPECT_EQ(extents[3].offset, 2 * kBlock + 6 * 512);
  EXPECT_EQ(extents[3].end(), 3 * kBlock);
}

TEST(VhdBitmap, ExtentsClipToTheAskedRange) {
  Diagnostics diagnostics;
  TestImage image(vhd::kDifferencing, {0xFF, 0xFF});
  auto layer = image.open(diagnostics);
  ASSERT_TRUE(layer.ok());
  std::vector<Extent> out;
  ASSERT_TRUE((*layer)->extents(kBlock - 1024, 2048, out).ok());
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].offset, kBlock - 1024);
  EXPECT_EQ(out[0].length, 2048u);
}

TEST(VhdDynamic, AllocatedBlocksReadWholeIgnoringTheBitmap) {
  Diagnostics diagnostics;
  TestImage image(vhd::kDynamic, {0x00, -1});
  auto layer = image.open(diagnostics);
  ASSERT_TRUE(layer.ok());
  const auto extents = extents_of(**layer);
  ASSERT_EQ(extents.size(), 1u);
  EXPECT_EQ(extents[0].length, kBlock);
  std::vector<std::byte> data(2 * kBlock);
  ASSERT_TRUE((*layer)->read(0, data).ok());
  EXPECT_EQ(data[0], std::byte{0x10});
  EXPECT_TRUE(all_zero(std::span(data).subspan(kBlock)));
}

TEST(VhdFooter, BadChecksumIsRefusedNamingFileAndField) {
  Diagnostics diagnostics;
  TestImage image(vhd::kDynamic, {-1});
  image.bytes[image.bytes.size() - 512 + 64] ^= std::byte{1};
  image.bytes[64] ^= std::byte{1};
  auto layer = image.open(diagnostics);
  ASSERT_FALSE(layer.ok());
  EXPECT_NE(layer.error().message.find("test.vhd: footer at end of file: Checksum"), std::string::npos);
  EXPECT_TRUE(image.open(diagnostics, true).ok());
}

TEST(VhdFooter, DamagedEndFooterFallsBackToTheCopyAtZero) {
  Diagnostics diagnostics;
  TestImage image(vhd::kDynamic, {-1});
  std::fill(image.bytes.end() - 512, image.bytes.end(), std::byte{0});
  auto layer = image.open(diagnostics);
  ASSERT_TRUE(layer.ok()) << layer.error().message;
  ASSERT_EQ(diagnostics.warnings.size(), 1u);
  EXPECT_NE(diagnostics.warnings[0].find("copy at offset 0"), std::string::npos);
}

TEST(VhdFooter, FixedDiskWithThe511ByteFooterOfOldVirtualPc) {
  const uint64_t size = 8192;
  vhd::Footer footer = TestImage::make_footer(vhd::kFixed, size);
  footer.data_offset = vhd::kNoDataOffset;
  footer.checksum = vhd::checksum(std::as_bytes(std::span(&footer, 1)), 64);
  std::vector<std::byte> bytes(size, std::byte{0x5A});
  const auto* raw = reinterpret_cast<const std::byte*>(&footer);
  bytes.insert(bytes.end(), raw, raw + 511);
  Diagnostics diagnostics;
  auto layer = open_layer(std::make_unique<MemorySource>("old.vhd", bytes), OpenOptions{false, &diagnostics});
  ASSERT_TRUE(layer.ok()) << layer.error().message;
  EXPECT_EQ((*layer)->virtual_size(), size);
  std::vector<std::byte> data(size);
  ASSERT_TRUE((*layer)->read(0, data).ok());
  EXPECT_EQ(data[size - 1], std::byte{0x5A});
}

TEST(VhdLayout, OverlappingBlocksAreCollectedInCheckMode) {
  TestImage image(vhd::kDynamic, {0xFF, 0xFF});
  std::memcpy(image.bytes.data() + 1536 + 4, image.bytes.data() + 1536, 4);  // entry 1 = entry 0
  Diagnostics refuse;
  auto refused = image.open(refuse);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("overlaps"), std::string::npos);
  Diagnostics collect;
  collect.collect_problems = true;
  EXPECT_TRUE(image.open(collect).ok());
  EXPECT_EQ(collect.problems.size(), 1u);
}

TEST(VhdLocators, DataSpaceInBytesOrSectorsAndUtf16) {
  TestImage image(vhd::kDifferencing, {-1});
  const std::string relative = ".\\base.vhd";
  std::vector<std::byte> utf16le;
  for (char c : relative) utf16le.insert(utf16le.end(), {std::byte(c), std::byte{0}});
  // Two 512-byte data areas before the footer, one per locator.
  const uint64_t at = image.bytes.size() - 512;
  image.bytes.insert(image.bytes.begin() + static_cast<long>(at), 1024, std::byte{0});
  std::memcpy(image.bytes.data() + at, utf16le.data(), utf16le.size());
  std::memcpy(image.bytes.data() + at + 512, utf16le.data(), utf16le.size());
  auto& entry = image.header.parent_locators[0];
  entry.platform_code = vhd::kW2ru;
  entry.platform_data_space = 1;  // sectors, as the spec says
  entry.platform_data_length = static_cast<uint32_t>(utf16le.size());
  entry.platform_data_offset = at;
  image.header.parent_locators[1] = entry;
  image.header.parent_locators[1].platform_code = vhd::kW2ku;
  image.header.parent_locators[1].platform_data_space = 512;  // bytes, as Windows writes
  image.header.parent_locators[1].platform_data_offset = at + 512;
  image.seal();
  Diagnostics diagnostics;
  diagnostics.collect_problems = true;
  auto layer = image.open(diagnostics);
  ASSERT_TRUE(layer.ok()) << layer.error().message;
  EXPECT_TRUE(diagnostics.problems.empty()) << diagnostics.problems[0];
  const ParentLink* link = (*layer)->parent_link();
  ASSERT_NE(link, nullptr);
  ASSERT_EQ(link->locators.size(), 2u);
  EXPECT_EQ(link->locators[0].kind, "W2ru");
  EXPECT_TRUE(link->locators[0].relative);
  EXPECT_EQ(link->locators[0].path, relative);
  EXPECT_EQ(link->locators[1].kind, "W2ku");
}

}  // namespace
}  // namespace troy
