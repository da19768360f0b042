// ReadAhead: items arrive in order, each filled once, never overwritten while
// the consumer holds them; a fill error stops reading at its item; the
// consumer may stop early.
#include "read_ahead.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>

namespace troy::cli {
namespace {

ReadAhead::Fill numbered(std::atomic<size_t>& fills) {
  return [&fills](size_t index, PieceBuffers& buffers) -> Result<void> {
    fills++;
    buffers.target = buffers.target.first(sizeof index);
    std::memcpy(buffers.target.data(), &index, sizeof index);
    return success();
  };
}

size_t number_in(const PieceBuffers& buffers) {
  size_t index = 0;
  std::memcpy(&index, buffers.target.data(), sizeof index);
  return index;
}

TEST(ReadAhead, HandsOutEveryItemInOrderAtAnyDepth) {
  for (size_t depth : {1, 2, 8}) {
    std::atomic<size_t> fills = 0;
    ReadAhead reader(100, depth, 64, numbered(fills));
    for (size_t i = 0; i < 100; i++) {
      auto item = reader.next();
      ASSERT_TRUE(item) << item.error().message;
      EXPECT_EQ(number_in(**item), i) << "depth " << depth;
      // Held while the reader runs ahead: still the same item afterwards.
      std::this_thread::yield();
      EXPECT_EQ(number_in(**item), i) << "depth " << depth;
    }
    EXPECT_EQ(fills, 100u);
    EXPECT_FALSE(reader.next());
  }
}

TEST(ReadAhead, NeverRunsMoreThanDepthAhead) {
  std::atomic<size_t> fills = 0;
  ReadAhead reader(50, 4, 64, numbered(fills));
  ASSERT_TRUE(reader.next());
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_LE(fills, 4u);  // the held item and three more
}

TEST(ReadAhead, AFillErrorArrivesWithItsItemAndStopsReading) {
  std::atomic<size_t> fills = 0;
  ReadAhead reader(10, 3, 64, [&](size_t index, PieceBuffers& buffers) -> Result<void> {
    fills++;
    if (index == 4) return Error{"disk.raw: read error at offset 4"};
    buffers.target = buffers.target.first(sizeof index);
    std::memcpy(buffers.target.data(), &index, sizeof index);
    return success();
  });
  for (size_t i = 0; i < 4; i++) ASSERT_TRUE(reader.next());
  auto failed = reader.next();
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().message, "disk.raw: read error at offset 4");
  EXPECT_EQ(fills, 5u);
}

TEST(ReadAhead, StopsCleanlyWhenTheConsumerGivesUpEarly) {
  std::atomic<size_t> fills = 0;
  {
    ReadAhead reader(1000, 2, 64, numbered(fills));
    ASSERT_TRUE(reader.next());
  }
  EXPECT_LT(fills, 1000u);
}

}  // namespace
}  // namespace troy::cli
