#include "chunk_index.h"

#include <gtest/gtest.h>

#include <cstring>

#include "integers.h"

namespace troy::cli {
namespace {

constexpr uint32_t kPiece = 64 << 10;

// 3.5 pieces: a piece of pattern, a piece of zeros, a piece of pattern, half a piece.
std::vector<std::byte> sample_bytes() {
  std::vector<std::byte> bytes(kPiece * 3 + kPiece / 2);
  for (size_t i = 0; i < bytes.size(); i++) bytes[i] = std::byte(static_cast<uint8_t>(i * 7 + i / 4096));
  std::fill(bytes.begin() + kPiece, bytes.begin() + 2 * kPiece, std::byte{0});
  return bytes;
}

ChunkIndex sample_index() {
  const MemorySource source("disk", sample_bytes());
  auto index = index_source(source, kPiece, {}, {}, /*unit_crcs=*/true);
  EXPECT_TRUE(index.ok());
  return *index;
}

// Rewrites the trailer after a header change, so the test reaches the field check.
void reseal(std::vector<std::byte>& bytes) {
  const auto body = std::span(bytes).first(bytes.size() - 32);
  const Sha256 trailer = sha256(body);
  std::memcpy(bytes.data() + body.size(), trailer.data(), 32);
}

template <typename T>
void poke(std::vector<std::byte>& bytes, size_t offset, T value) {
  std::memcpy(bytes.data() + offset, &value, sizeof value);
}

std::string parse_error(const std::vector<std::byte>& bytes) {
  auto parsed = parse_chunk_index(bytes, "v2.cidx");
  EXPECT_FALSE(parsed.ok());
  return parsed.ok() ? "" : parsed.error().message;
}

TEST(ChunkIndex, IndexesPiecesAndMarksZeros) {
  const ChunkIndex index = sample_index();
  const auto bytes = sample_bytes();
  ASSERT_EQ(index.piece_count(), 4u);
  EXPECT_FALSE(index.is_zero(0));
  EXPECT_TRUE(index.is_zero(1));
  EXPECT_EQ(index.piece_length(3), kPiece / 2);
  EXPECT_EQ(index.pieces[2], sha256(std::span(bytes).subspan(2 * kPiece, kPiece)));
  EXPECT_EQ(index.units(1).size(), 0u);
  EXPECT_EQ(index.units(3).size(), kPiece / 2 / kChunkUnit);
  EXPECT_EQ(index.units(2)[1], unit_crcs_of(std::span(bytes).subspan(2 * kPiece + kChunkUnit, kChunkUnit))[0]);
}

TEST(ChunkIndex, RoundTrips) {
  const ChunkIndex index = sample_index();
  auto parsed = parse_chunk_index(serialize(index), "x");
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed->pieces, index.pieces);
  EXPECT_EQ(parsed->unit_crcs, index.unit_crcs);
  EXPECT_EQ(parsed->total_size, index.total_size);
  EXPECT_EQ(parsed->units(2).size(), index.units(2).size());
}

TEST(ChunkIndex, WithoutUnitCrcsRoundTrips) {
  const MemorySource source("disk", sample_bytes());
  auto index = index_source(source, kPiece);
  ASSERT_TRUE(index.ok());
  EXPECT_TRUE(index->unit_crcs.empty());
  EXPECT_TRUE(index->units(0).empty());
  const auto bytes = serialize(*index);
  EXPECT_EQ(bytes.size(), 64u + 4 * 32 + 32);
  auto parsed = parse_chunk_index(bytes, "x");
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed->pieces, index->pieces);
  EXPECT_EQ(parsed->unit_size, 0u);
}

TEST(ChunkIndex, UnitsFileRoundTripsAndRefusesAWrongLength) {
  const std::vector<uint32_t> crcs = {1, 0xdeadbeef, 3};
  const auto bytes = serialize_units(crcs);
  EXPECT_EQ(parse_units(bytes, 3), crcs);
  EXPECT_FALSE(parse_units(bytes, 2).has_value());
  EXPECT_FALSE(parse_units(std::span(bytes).first(11), 3).has_value());
}

TEST(ChunkIndex, VisitsOnlyPiecesThatAreNotZeros) {
  const MemorySource source("disk", sample_bytes());
  std::vector<size_t> visited;
  auto index = index_source(source, kPiece, [&](size_t i, const Sha256& sha, std::span<const std::byte> bytes) {
    EXPECT_EQ(sha, sha256(bytes));
    visited.push_back(i);
    return success();
  });
  ASSERT_TRUE(index.ok());
  EXPECT_EQ(visited, (std::vector<size_t>{0, 2, 3}));
}

TEST(ChunkIndex, RefusesTruncationAndExtension) {
  const auto whole = serialize(sample_index());
  for (size_t cut : {size_t{0}, size_t{10}, size_t{64}, size_t{100}, whole.size() - 33, whole.size() - 1}) {
    auto bytes = whole;
    bytes.resize(cut);
    const std::string error = parse_error(bytes);
    EXPECT_NE(error.find("v2.cidx: chunk index: "), std::string::npos) << error;
  }
  auto longer = whole;
  longer.insert(longer.end() - 32, std::byte{1});
  longer.insert(longer.end() - 32, std::byte{1});
  longer.insert(longer.end() - 32, std::byte{1});
  longer.insert(longer.end() - 32, std::byte{1});
  reseal(longer);
  EXPECT_NE(parse_error(longer).find("unit_count"), std::string::npos);
}

TEST(ChunkIndex, RefusesEachBadHeaderField) {
  const auto good = serialize(sample_index());
  auto bytes = good;
  bytes[0] = std::byte{'X'};
  EXPECT_NE(parse_error(bytes).find("magic"), std::string::npos);
  bytes = good;
  poke(bytes, 8, ul32{2});
  reseal(bytes);
  EXPECT_NE(parse_error(bytes).find("version 2"), std::string::npos);
  for (uint32_t size : {0u, 4096u, 3u << 16, 8u << 20, 0xffffffffu}) {
    bytes = good;
    poke(bytes, 12, ul32{size});
    reseal(bytes);
    EXPECT_NE(parse_error(bytes).find("piece_size"), std::string::npos) << size;
  }
  bytes = good;
  poke(bytes, 16, ul64{~0ull});  // an absurd total size
  reseal(bytes);
  EXPECT_NE(parse_error(bytes).find("piece_count 4 does not cover total_size"), std::string::npos);
  bytes = good;
  poke(bytes, 24, ul64{~0ull >> 1});  // an absurd count: refused before any allocation
  reseal(bytes);
  EXPECT_NE(parse_error(bytes).find("piece_count"), std::string::npos);
  bytes = good;
  poke(bytes, 32, ul32{512});
  reseal(bytes);
  EXPECT_NE(parse_error(bytes).find("unit_size"), std::string::npos);
  bytes = good;
  poke(bytes, 32, ul32{0});  // no CRCs, yet the file holds them
  reseal(bytes);
  EXPECT_NE(parse_error(bytes).find("unit_count"), std::string::npos);
  bytes = good;
  poke(bytes, 40, ul64{3});
  reseal(bytes);
  EXPECT_NE(parse_error(bytes).find("unit_count"), std::string::npos);
  bytes = good;
  bytes[60] = std::byte{1};
  reseal(bytes);
  EXPECT_NE(parse_error(bytes).find("reserved"), std::string::npos);
}

TEST(ChunkIndex, RefusesADamagedEntryByItsTrailer) {
  auto bytes = serialize(sample_index());
  bytes[64 + 5] ^= std::byte{1};
  EXPECT_NE(parse_error(bytes).find("trailer sha256"), std::string::npos);
}

TEST(ChunkIndex, RefusesAZeroMarkerWhereUnitsWereCounted) {
  // Piece 0 turned into a zero marker: its units are then one piece too many.
  auto bytes = serialize(sample_index());
  std::fill(bytes.begin() + 64, bytes.begin() + 96, std::byte{0});
  reseal(bytes);
  EXPECT_NE(parse_error(bytes).find("unit_count"), std::string::npos);
}

TEST(ChunkIndex, PieceSizeMustBeAPowerOfTwoInRange) {
  EXPECT_TRUE(check_piece_size(64 << 10, "x").ok());
  EXPECT_TRUE(check_piece_size(4 << 20, "x").ok());
  EXPECT_FALSE(check_piece_size(32 << 10, "x").ok());
  EXPECT_FALSE(check_piece_size(3 << 20, "x").ok());
  EXPECT_FALSE(check_piece_size(8 << 20, "x").ok());
}

}  // namespace
}  // namespace troy::cli
