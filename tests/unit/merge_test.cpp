// What merge writes, against the Layer and ImageUpdater interfaces alone:
// which ranges the layers above the target hold (and of which kind), which
// sectors differ, and in what order the target is told.
#include "merge.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "fake_layer.h"

namespace troy {
namespace {

constexpr uint64_t S = 512;  // FakeLayer's sector

Chain chain_of(std::vector<std::unique_ptr<Layer>> layers) { return Chain(std::move(layers)); }

std::unique_ptr<Layer> layer(uint64_t sectors, char fill, std::vector<Extent> extents) {
  for (Extent& e : extents) {
    e.offset *= S;
    e.length *= S;
  }
  return std::make_unique<FakeLayer>(sectors * S, static_cast<uint8_t>(fill), std::move(extents));
}

std::string describe(const std::vector<Extent>& extents) {
  std::string out;
  for (const Extent& e : extents)
    out += fmt::format("{}{}{}+{}", out.empty() ? "" : " ", e.kind == ExtentKind::Data ? "D" : "Z", e.offset / S,
                       e.length / S);
  return out;
}

// Records what merge_into asks of the target.
class RecordingUpdater final : public ImageUpdater {
 public:
  uint64_t virtual_size() const override { return 64 * S; }
  uint32_t logical_sector_size() const override { return S; }
  uint64_t block_size() const override { return 8 * S; }
  Result<void> write(uint64_t offset, std::span<const std::byte> data) override {
    log += fmt::format("write {}+{};", offset / S, data.size() / S);
    return success();
  }
  Result<void> write_zeros(uint64_t offset, uint64_t length) override {
    log += fmt::format("zero {}+{};", offset / S, length / S);
    return success();
  }
  Result<void> commit() override { return success(); }
  Result<void> close() override {
    log += "close;";
    return success();
  }
  Guid link_id() const override { return {}; }
  Result<void> set_parent(const ParentRecord&) override { return success(); }
  Result<void> grow(uint64_t) override { return success(); }
  Result<void> can_grow(uint64_t) const override { return success(); }
  Result<void> set_merge_in_progress(bool in_progress) override {
    log += in_progress ? "mark;" : "unmark;";
    return success();
  }
  uint64_t blocks_allocated() const override { return 0; }
  std::string log;
};

TEST(Merge, RangesComeFromTheHighestLayerAboveTheTarget) {
  std::vector<std::unique_ptr<Layer>> layers;
  layers.push_back(layer(16, 'C', {{2, 2, ExtentKind::Data}}));
  layers.push_back(layer(16, 'B', {{3, 4, ExtentKind::Zero}, {10, 2, ExtentKind::Data}}));
  layers.push_back(layer(16, 'A', {{0, 16, ExtentKind::Data}}));
  const Chain chain = chain_of(std::move(layers));
  std::vector<Extent> into_parent;
  ASSERT_TRUE(extents_above(chain, 1, 0, 16 * S, into_parent).ok());
  EXPECT_EQ(describe(into_parent), "D2+2");
  std::vector<Extent> into_base;
  ASSERT_TRUE(extents_above(chain, 2, 0, 16 * S, into_base).ok());
  EXPECT_EQ(describe(into_base), "D2+2 Z4+3 D10+2");
}

TEST(Merge, OnlySectorsThatDifferAreReported) {
  std::vector<std::unique_ptr<Layer>> layers;
  // The child holds sectors 0-5: 0-1 equal to the target's, 2-5 not.
  layers.push_back(layer(16, 'A', {{0, 2, ExtentKind::Data}}));
  layers.push_back(layer(16, 'B', {{2, 4, ExtentKind::Data}}));
  layers.push_back(layer(16, 'A', {{0, 8, ExtentKind::Data}}));
  const Chain chain = chain_of(std::move(layers));
  MergeWalk walk;
  walk.target_level = 2;
  std::string seen;
  auto stats = walk_changes(chain, walk, [&](const Change& change) {
    seen += fmt::format("{}+{};", change.offset / S, change.new_bytes.size() / S);
    EXPECT_EQ(change.new_bytes[0], std::byte{'B'});
    EXPECT_EQ(change.old_bytes[0], std::byte{'A'});
    return success();
  });
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(seen, "2+4;");
  EXPECT_EQ(stats->bytes_identical, 2 * S);
  EXPECT_EQ(stats->bytes_changed, 4 * S);
}

TEST(Merge, ZeroRangesAreSkippedWhereTheTargetReadsZeros) {
  std::vector<std::unique_ptr<Layer>> layers;
  layers.push_back(layer(16, 'C', {{0, 8, ExtentKind::Zero}}));
  layers.push_back(layer(16, 'A', {{4, 2, ExtentKind::Data}}));  // reads zeros elsewhere
  const Chain chain = chain_of(std::move(layers));
  MergeWalk walk;
  std::string seen;
  auto stats = walk_changes(chain, walk, [&](const Change& change) {
    EXPECT_TRUE(change.zeros);
    seen += fmt::format("{}+{};", change.offset / S, change.new_bytes.size() / S);
    return success();
  });
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(seen, "4+2;");
  EXPECT_EQ(stats->bytes_zeroed, 2 * S);
}

TEST(Merge, WithoutCompareEveryRangeIsReported) {
  std::vector<std::unique_ptr<Layer>> layers;
  layers.push_back(layer(16, 'A', {{0, 3, ExtentKind::Data}}));
  layers.push_back(layer(16, 'A', {{0, 16, ExtentKind::Data}}));
  const Chain chain = chain_of(std::move(layers));
  MergeWalk walk;
  walk.compare = false;
  uint64_t reported = 0;
  auto stats = walk_changes(chain, walk, [&](const Change& change) {
    reported += change.new_bytes.size();
    EXPECT_TRUE(change.old_bytes.empty());
    return success();
  });
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(reported, 3 * S);
  EXPECT_EQ(stats->bytes_identical, 0u);
}

TEST(Merge, TheTargetIsMarkedBeforeItsFirstChangeAndUnmarkedAfterTheLast) {
  std::vector<std::unique_ptr<Layer>> layers;
  layers.push_back(layer(64, 'C', {{1, 2, ExtentKind::Data}, {8, 8, ExtentKind::Zero}}));
  layers.push_back(layer(64, 'A', {{0, 64, ExtentKind::Data}}));
  const Chain chain = chain_of(std::move(layers));
  RecordingUpdater target;
  int journal_writes = 0;
  auto stats = merge_into(chain, MergeWalk{}, target, [&] {
    target.log += "journal;";
    journal_writes++;
    return success();
  });
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(journal_writes, 1);
  EXPECT_EQ(target.log, "journal;mark;write 1+2;zero 8+8;unmark;close;");
}

TEST(Merge, NothingDifferentMeansNoJournalAndNoMark) {
  std::vector<std::unique_ptr<Layer>> layers;
  layers.push_back(layer(64, 'A', {{1, 2, ExtentKind::Data}}));
  layers.push_back(layer(64, 'A', {{0, 64, ExtentKind::Data}}));
  const Chain chain = chain_of(std::move(layers));
  RecordingUpdater target;
  auto stats = merge_into(chain, MergeWalk{}, target, [&] {
    ADD_FAILURE() << "the journal is written although nothing changes";
    return success();
  });
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(target.log, "unmark;close;");
  EXPECT_EQ(stats->runs, 0u);
}

}  // namespace
}  // namespace troy
