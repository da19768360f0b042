#include <gtest/gtest.h>

#include "buffers.h"

namespace troy::cli {
namespace {

constexpr size_t MiB = 1 << 20;

TEST(BuffersForMemory, AMachineWithRoomGetsWhatWasAsked) {
  EXPECT_EQ(buffers_for_memory(8, 4 * MiB, 2048 * MiB), 8u);
}

TEST(BuffersForMemory, ASmallMachineKeepsASixteenthOfItsMemoryInFlight) {
  // A boot payload with 96 MiB available: 6 MiB is one 4 MiB buffer's worth, and 2 is the floor.
  EXPECT_EQ(buffers_for_memory(8, 4 * MiB, 96 * MiB), 2u);
  EXPECT_EQ(buffers_for_memory(8, 4 * MiB, 256 * MiB), 4u);
}

TEST(BuffersForMemory, UnknownMemoryChangesNothing) { EXPECT_EQ(buffers_for_memory(8, 4 * MiB, 0), 8u); }

TEST(BuffersForMemory, NeverMoreThanWanted) { EXPECT_EQ(buffers_for_memory(1, 4 * MiB, 64 * MiB), 1u); }

TEST(AvailableMemory, ReadsThisMachinesMeminfo) { EXPECT_GT(available_memory(), 0u); }

}  // namespace
}  // namespace troy::cli
