#include "sync.h"

#include <gtest/gtest.h>

#include <map>

namespace troy::cli {
namespace {

constexpr uint32_t kPiece = 64 << 10;

std::vector<std::byte> pattern(size_t size, uint8_t seed) {
  std::vector<std::byte> bytes(size);
  uint32_t state = seed * 2654435761u + 1;
  for (auto& byte : bytes) {
    state = state * 1103515245u + 12345u;
    byte = std::byte(static_cast<uint8_t>(state >> 16));
  }
  return bytes;
}

class MemoryDisk final : public SyncDisk {
 public:
  explicit MemoryDisk(std::vector<std::byte> bytes) : bytes_(std::move(bytes)) {}
  uint64_t size() const override { return bytes_.size(); }
  const std::string& name() const override { return name_; }
  Result<void> read(uint64_t offset, std::span<std::byte> out) override {
    std::copy_n(bytes_.begin() + offset, out.size(), out.begin());
    return success();
  }
  Result<void> write(uint64_t offset, std::span<const std::byte> data) override {
    std::copy(data.begin(), data.end(), bytes_.begin() + offset);
    writes++;
    return success();
  }
  Result<void> zero(uint64_t offset, uint64_t length) override {
    std::fill_n(bytes_.begin() + offset, length, std::byte{0});
    zeroed += length;
    return success();
  }
  Result<void> flush() override { return success(); }
  std::vector<std::byte> bytes_;
  int writes = 0;
  uint64_t zeroed = 0;
  std::string name_ = "disk";
};

// A store of the version's pieces that counts what it serves; `fail_after`
// simulates a run cut short (kill, power cut) after that many fetches.
class MemoryStore final : public ChunkStore {
 public:
  Result<std::vector<std::byte>> fetch(const Sha256& sha, uint32_t offset, uint32_t length) override {
    if (fetches == fail_after) return Error{"cut"};
    fetches++;
    bytes += length;
    const auto& piece = pieces.at(sha);
    return std::vector<std::byte>(piece.begin() + offset, piece.begin() + offset + length);
  }
  Result<std::vector<std::byte>> fetch_units(const Sha256& sha) override {
    if (!with_units) return Error{"no units"};
    unit_fetches++;
    const auto crcs = unit_crcs_of(pieces.at(sha));
    bytes += crcs.size() * 4;
    return serialize_units(crcs);
  }
  bool with_units = true;
  int unit_fetches = 0;
  const std::string& location() const override { return location_; }
  std::map<Sha256, std::vector<std::byte>> pieces;
  int fetches = 0;
  int fail_after = -1;
  uint64_t bytes = 0;
  std::string location_ = "store";
};

struct Version {
  std::vector<std::byte> content;
  ChunkIndex index;
  MemoryStore store;
};

// 8 pieces: pattern in each, piece 5 zeros, the last one half a piece.
Version make_version(bool index_units = true) {
  Version version;
  version.content = pattern(kPiece * 7 + kPiece / 2, 1);
  std::fill_n(version.content.begin() + 5 * kPiece, kPiece, std::byte{0});
  const MemorySource source("v", version.content);
  auto index = index_source(source, kPiece, [&](size_t, const Sha256& sha, std::span<const std::byte> bytes) {
    version.store.pieces[sha] = std::vector<std::byte>(bytes.begin(), bytes.end());
    return success();
  }, {}, index_units);
  EXPECT_TRUE(index.ok());
  version.index = *index;
  return version;
}

std::vector<Sha256> piece_hashes(const ChunkIndex& index, const std::vector<std::byte>& disk) {
  std::vector<Sha256> hashes;
  for (size_t i = 0; i < index.piece_count(); i++) {
    const auto bytes = std::span(disk).subspan(index.piece_offset(i), index.piece_length(i));
    hashes.push_back(is_zero_bytes(bytes) ? Sha256{} : sha256(bytes));
  }
  return hashes;
}

std::span<std::byte> piece_of(std::vector<std::byte>& bytes, size_t i, size_t count = 1) {
  return std::span(bytes).subspan(i * kPiece, count * kPiece);
}

TEST(SyncPlan, KeepsInPlaceCopiesMovedZeroesAndFetchesTheRest) {
  Version version = make_version();
  auto disk = version.content;
  // piece 1 moved to where piece 6 was (piece 6 lost), piece 5 no longer zeros, piece 2 foreign
  std::copy_n(piece_of(version.content, 1).begin(), kPiece, piece_of(disk, 6).begin());
  std::copy_n(pattern(kPiece, 9).begin(), kPiece, piece_of(disk, 1).begin());
  std::copy_n(pattern(kPiece, 8).begin(), kPiece, piece_of(disk, 5).begin());
  std::copy_n(pattern(kPiece, 7).begin(), kPiece, piece_of(disk, 2).begin());
  const auto plan = plan_sync(version.index, piece_hashes(version.index, disk));
  EXPECT_EQ(plan[0].action, PieceAction::Keep);
  EXPECT_EQ(plan[1].action, PieceAction::Copy);
  EXPECT_EQ(plan[1].copy_from, 6u * kPiece);
  EXPECT_EQ(plan[2].action, PieceAction::Fetch);
  EXPECT_EQ(plan[3].action, PieceAction::Keep);
  EXPECT_EQ(plan[5].action, PieceAction::Zero);
  // piece 6's own content is elsewhere nowhere once piece 1 has been copied away from it
  EXPECT_EQ(plan[6].action, PieceAction::Fetch);
  EXPECT_EQ(plan[7].action, PieceAction::Keep);
}

TEST(SyncPlan, ACopySourceOverwrittenEarlierIsNotUsed) {
  Version version = make_version();
  auto disk = version.content;
  // piece 6's content sits at piece 0, which is rewritten (to its own content, fetched) first.
  std::copy_n(piece_of(version.content, 6).begin(), kPiece, piece_of(disk, 0).begin());
  std::copy_n(pattern(kPiece, 3).begin(), kPiece, piece_of(disk, 6).begin());
  const auto plan = plan_sync(version.index, piece_hashes(version.index, disk));
  EXPECT_EQ(plan[0].action, PieceAction::Fetch);
  EXPECT_EQ(plan[6].action, PieceAction::Fetch);
}

TEST(SyncPlan, ARepeatedPieceIsCopiedFromWhereItWasJustWritten) {
  Version version = make_version();
  std::copy_n(piece_of(version.content, 0).begin(), kPiece, piece_of(version.content, 3).begin());
  const MemorySource source("v", version.content);
  auto index = index_source(source, kPiece);
  ASSERT_TRUE(index.ok());
  const std::vector<std::byte> blank(version.content.size());
  const auto plan = plan_sync(*index, piece_hashes(*index, blank));
  EXPECT_EQ(plan[0].action, PieceAction::Fetch);
  EXPECT_EQ(plan[3].action, PieceAction::Copy);
  EXPECT_EQ(plan[3].copy_from, 0u);
  EXPECT_EQ(plan[5].action, PieceAction::Keep);  // zeros on a blank disk already
}

TEST(SyncRuns, OnlyTheUnitsThatDifferMergedWhenAdjacent) {
  const std::vector<uint32_t> wanted(16, 1);
  std::vector<uint32_t> held(16, 1);
  held[2] = held[3] = held[9] = 0;
  const auto runs = runs_to_fetch(wanted, held, 16 * kChunkUnit);
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0].offset, 2 * kChunkUnit);
  EXPECT_EQ(runs[0].length, 2 * kChunkUnit);
  EXPECT_EQ(runs[1].offset, 9 * kChunkUnit);
  std::fill(held.begin(), held.begin() + 9, 0);
  EXPECT_EQ(runs_to_fetch(wanted, held, 16 * kChunkUnit).size(), 1u);  // more than half: the whole piece
  EXPECT_EQ(runs_to_fetch(wanted, held, 16 * kChunkUnit)[0].length, 16 * kChunkUnit);
}

TEST(SyncRuns, NonzeroRunsAreTheUnitsHoldingDataOrTheWholePieceBeyondAQuarter) {
  std::vector<std::byte> piece(16 * kChunkUnit);
  EXPECT_TRUE(nonzero_runs(piece).empty());
  piece[2 * kChunkUnit + 7] = piece[3 * kChunkUnit] = piece[9 * kChunkUnit + 4095] = std::byte{1};
  const auto runs = nonzero_runs(piece);
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0].offset, 2 * kChunkUnit);
  EXPECT_EQ(runs[0].length, 2 * kChunkUnit);
  EXPECT_EQ(runs[1].offset, 9 * kChunkUnit);
  EXPECT_EQ(runs[1].length, kChunkUnit);
  piece[10 * kChunkUnit] = piece[12 * kChunkUnit] = std::byte{1};  // 5 of 16 units: the whole piece
  ASSERT_EQ(nonzero_runs(piece).size(), 1u);
  EXPECT_EQ(nonzero_runs(piece)[0].length, 16 * kChunkUnit);
}

TEST(Sync, StrayUnitsInAZeroPieceAreOverwrittenNotThePiece) {
  Version version = make_version();
  ASSERT_TRUE(version.index.is_zero(5));
  MemoryDisk disk(version.content);
  disk.bytes_[5 * kPiece + 100] = disk.bytes_[5 * kPiece + 3 * kChunkUnit] = std::byte{7};
  auto stats = sync_disk(version.index, disk, version.store, {});
  ASSERT_TRUE(stats.ok()) << stats.error().message;
  EXPECT_EQ(disk.bytes_, version.content);
  EXPECT_EQ(disk.zeroed, 0u);
  EXPECT_EQ(disk.writes, 2);  // units 0 and 3
  // Data in most of it: the whole piece is zeroed.
  std::fill_n(disk.bytes_.begin() + 5 * kPiece, kPiece / 2, std::byte{7});
  ASSERT_TRUE(sync_disk(version.index, disk, version.store, {}).ok());
  EXPECT_EQ(disk.bytes_, version.content);
  EXPECT_EQ(disk.zeroed, kPiece);
}

TEST(Sync, BringsAnyDiskToTheVersionFetchingOnlyWhatDiffers) {
  Version version = make_version();
  MemoryDisk disk(version.content);
  disk.bytes_.resize(disk.bytes_.size() + kPiece, std::byte{0x5a});  // beyond the version: kept as it is
  disk.bytes_[3 * kPiece + 5000] ^= std::byte{1};                        // one unit of piece 3 drifted
  std::copy_n(piece_of(version.content, 1).begin(), kPiece, piece_of(disk.bytes_, 6).begin());
  auto stats = sync_disk(version.index, disk, version.store, {});
  ASSERT_TRUE(stats.ok()) << stats.error().message;
  EXPECT_TRUE(std::equal(version.content.begin(), version.content.end(), disk.bytes_.begin()));
  EXPECT_EQ(disk.bytes_.back(), std::byte{0x5a});
  EXPECT_EQ(stats->fetched, 2u);                       // piece 3 (one unit) and piece 6
  EXPECT_EQ(version.store.bytes, kChunkUnit + kPiece);  // piece 6 had nothing of its own
}

TEST(Sync, TakesTheUnitCrcsFromTheStoreWhenTheIndexHasNone) {
  Version version = make_version(/*index_units=*/false);
  MemoryDisk disk(version.content);
  disk.bytes_[2 * kPiece + 9000] ^= std::byte{1};
  auto stats = sync_disk(version.index, disk, version.store, {});
  ASSERT_TRUE(stats.ok()) << stats.error().message;
  EXPECT_EQ(disk.bytes_, version.content);
  EXPECT_EQ(version.store.unit_fetches, 1);
  EXPECT_EQ(version.store.bytes, kChunkUnit + kPiece / kChunkUnit * 4);
  // a store without them: the whole piece
  disk.bytes_[2 * kPiece + 9000] ^= std::byte{1};
  version.store.with_units = false;
  version.store.bytes = 0;
  ASSERT_TRUE(sync_disk(version.index, disk, version.store, {}).ok());
  EXPECT_EQ(disk.bytes_, version.content);
  EXPECT_EQ(version.store.bytes, kPiece);
}

TEST(Sync, ABlankDiskFetchesEveryPieceButTheZeros) {
  Version version = make_version();
  MemoryDisk disk{std::vector<std::byte>(version.content.size())};
  auto stats = sync_disk(version.index, disk, version.store, {});
  ASSERT_TRUE(stats.ok()) << stats.error().message;
  EXPECT_EQ(disk.bytes_, version.content);
  EXPECT_EQ(stats->fetched, 7u);
  EXPECT_EQ(version.store.bytes, version.content.size() - kPiece);
}

TEST(Sync, ATamperedPieceIsRefusedAndNeverWritten) {
  Version version = make_version();
  version.store.pieces[version.index.pieces[4]][100] ^= std::byte{1};
  const std::vector<std::byte> blank(version.content.size());
  MemoryDisk disk(blank);
  auto stats = sync_disk(version.index, disk, version.store, {});
  ASSERT_FALSE(stats.ok());
  EXPECT_NE(stats.error().message.find("piece 4"), std::string::npos) << stats.error().message;
  EXPECT_NE(stats.error().message.find("tampered"), std::string::npos);
  EXPECT_TRUE(std::all_of(disk.bytes_.begin() + 4 * kPiece, disk.bytes_.begin() + 5 * kPiece,
                          [](std::byte b) { return b == std::byte{0}; }));
}

TEST(Sync, ARunCutShortEndsExactWhenRunAgainFetchingNothingTwice) {
  Version version = make_version();
  MemoryDisk disk(pattern(version.content.size(), 42));  // another lab's disk
  version.store.fail_after = 3;
  ASSERT_FALSE(sync_disk(version.index, disk, version.store, {}).ok());
  version.store.fail_after = -1;
  auto stats = sync_disk(version.index, disk, version.store, {});
  ASSERT_TRUE(stats.ok()) << stats.error().message;
  EXPECT_EQ(disk.bytes_, version.content);
  EXPECT_EQ(version.store.fetches, 7);  // each non-zero piece once over both runs
}

TEST(Sync, RefusesADiskSmallerThanTheVersion) {
  Version version = make_version();
  MemoryDisk disk{std::vector<std::byte>(kPiece)};
  auto stats = sync_disk(version.index, disk, version.store, {});
  ASSERT_FALSE(stats.ok());
  EXPECT_NE(stats.error().message.find("fewer than the version"), std::string::npos);
}

}  // namespace
}  // namespace troy::cli
