#include "held_table.h"

#include <gtest/gtest.h>

namespace troy::cli::held_table_test {
namespace {

constexpr uint32_t kPiece = 64 << 10;

std::vector<std::byte> filled(size_t pieces, uint8_t value) { return std::vector<std::byte>(pieces * kPiece, std::byte{value}); }

void set_piece(std::vector<std::byte>& disk, size_t piece, uint8_t value) {
  std::fill_n(disk.begin() + piece * kPiece, kPiece, std::byte{value});
}

ChunkIndex index_of(const std::vector<std::byte>& bytes) {
  auto index = index_source(MemorySource("v", bytes), kPiece);
  EXPECT_TRUE(index.ok());
  return *index;
}

struct Lab {
  std::vector<std::byte> base = filled(8, 1), v1, v2;
  HeldTable table;
  Lab() {
    // v1 changes A (piece 2) and B (piece 5); v2 puts A back as the base had it.
    v1 = base;
    set_piece(v1, 2, 7);
    set_piece(v1, 5, 8);
    v2 = v1;
    set_piece(v2, 2, 1);
    const std::vector<ChunkIndex> indexes = {index_of(base), index_of(v1), index_of(v2)};
    const std::vector<std::string> names = {"base", "v1", "v2"};
    auto made = make_held_table(indexes, names);
    EXPECT_TRUE(made.ok());
    table = *made;
  }
  std::optional<size_t> held(const std::vector<std::byte>& disk) const {
    std::vector<Sha256> rows;
    for (uint64_t piece : table.pieces) {
      const auto bytes = std::span(disk).subspan(piece * kPiece, kPiece);
      rows.push_back(is_zero_bytes(bytes) ? Sha256{} : sha256(bytes));
    }
    return held_by_content(table, rows);
  }
};

TEST(HeldTable, ADeltaThatRevertsDoesNotMakeABaseDiskLookUpToDate) {
  const Lab lab;
  EXPECT_EQ(lab.table.pieces, (std::vector<uint64_t>{2, 5}));
  EXPECT_EQ(lab.held(lab.base), 0u);  // the fingerprint walk says v2 here
  EXPECT_EQ(lab.held(lab.v1), 1u);
  EXPECT_EQ(lab.held(lab.v2), 2u);
}

TEST(HeldTable, ADriftedOrForeignDiskHoldsNoVersion) {
  const Lab lab;
  auto drifted = lab.v2;
  drifted[5 * kPiece + 100] = std::byte{0};
  EXPECT_FALSE(lab.held(drifted).has_value());
  EXPECT_FALSE(lab.held(filled(8, 0)).has_value());  // blank
  auto torn = lab.v1;  // v2's apply cut short: neither
  set_piece(torn, 2, 1);
  set_piece(torn, 5, 9);
  EXPECT_FALSE(lab.held(torn).has_value());
}

TEST(HeldTable, RoundTripsAndRefusesDamage) {
  const Lab lab;
  auto bytes = serialize(lab.table);
  auto parsed = parse_held_table(bytes, "v2.held");
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed->pieces, lab.table.pieces);
  EXPECT_EQ(parsed->hashes, lab.table.hashes);
  auto cut = bytes;
  cut.resize(cut.size() - 40);
  auto refused = parse_held_table(cut, "v2.held");
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("v2.held: held table: row_count"), std::string::npos);
  bytes[70] ^= std::byte{1};
  refused = parse_held_table(bytes, "v2.held");
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("trailer"), std::string::npos);
}

// No rows: every version alike wherever the base-line differs (as a squash
// can leave it). Found by UBSan: parsing it passed memcpy a null pointer.
TEST(HeldTable, ATableWithoutRowsRoundTrips) {
  HeldTable table;
  table.total_size = 4 << 20;
  table.versions = 2;
  auto parsed = parse_held_table(serialize(table), "v3.held");
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_TRUE(parsed->pieces.empty());
  EXPECT_TRUE(parsed->hashes.empty());
  EXPECT_EQ(parsed->versions, 2u);
}

}  // namespace
}  // namespace troy::cli::held_table_test
