#include "progress.h"

#include <string>

#include <gtest/gtest.h>

namespace troy::cli {
namespace {

constexpr double kMiB = 1 << 20;
constexpr double kGiB = kMiB * 1024;

TEST(ProgressText, BytesInTheLargestUnitThatKeepsThemShort) {
  EXPECT_EQ(short_bytes(0), "0 bytes");
  EXPECT_EQ(short_bytes(1000), "1000 bytes");
  EXPECT_EQ(short_bytes(812 * 1024), "812 KiB");
  EXPECT_EQ(short_bytes(512 * kMiB), "512 MiB");
  EXPECT_EQ(short_bytes(1023 * kMiB), "1023 MiB");
  EXPECT_EQ(short_bytes(1.5 * kGiB), "1.5 GiB");
  EXPECT_EQ(short_bytes(2048 * kGiB), "2.0 TiB");
}

TEST(ProgressText, DurationsAsHoursMinutesSeconds) {
  EXPECT_EQ(clock_duration(0), "0:00:00");
  EXPECT_EQ(clock_duration(-3), "0:00:00");
  EXPECT_EQ(clock_duration(7.4), "0:00:07");
  EXPECT_EQ(clock_duration(59.6), "0:01:00");
  EXPECT_EQ(clock_duration(5400), "1:30:00");
  EXPECT_EQ(clock_duration(100 * 3600 + 61), "100:01:01");
}

TEST(ProgressText, FiguresCountBytesDoneWithRateAndTimeLeft) {
  const uint64_t total = static_cast<uint64_t>(3 * kGiB);
  // A third done in 30 minutes: an hour left.
  EXPECT_EQ(progress_figures(total / 3, total, 1800), " 33% 1.0 GiB of 3.0 GiB, 583 KiB/s, 1:00:00 left");
  // No rate yet: no time left either.
  EXPECT_EQ(progress_figures(0, total, 0), "  0% 0 bytes of 3.0 GiB");
  EXPECT_EQ(progress_figures(110 * 1048576ull, 110 * 1048576ull, 1), "100% 110 MiB of 110 MiB, 110 MiB/s, 0:00:00 left");
}

// Runs a progress line of 100 bytes to the end and returns what it printed.
std::string drawn(const Console& console) {
  testing::internal::CaptureStderr();
  {
    Progress progress("copy", 100, console);
    for (uint64_t done = 0; done <= 100; done += 5) progress.update(done);
    progress.finish();
  }
  return testing::internal::GetCapturedStderr();
}

TEST(Progress, NothingWithoutATerminalOrWithQuiet) {
  EXPECT_EQ(drawn(Console{}), "");
  EXPECT_EQ(drawn(Console{.quiet = true, .force_progress = true, .terminal = true}), "");
}

TEST(Progress, ForcedWithoutATerminalPrintsPlainLinesAtEachTenth) {
  const std::string text = drawn(Console{.force_progress = true});
  EXPECT_EQ(text.find('\x1b'), std::string::npos) << text;
  EXPECT_EQ(text.find('\r'), std::string::npos) << text;
  size_t lines = 0;
  for (char c : text) lines += c == '\n';
  EXPECT_EQ(lines, 11u) << text;  // 0%, 10%, ... 100%
  EXPECT_NE(text.find("copy [##############################] 100% 100 bytes of 100 bytes"), std::string::npos) << text;
}

TEST(Progress, DumbTerminalRedrawsWithoutEscapeSequences) {
  const std::string text = drawn(Console{.terminal = true, .dumb = true});
  EXPECT_EQ(text.find('\x1b'), std::string::npos) << text;
  ASSERT_NE(text.find("\rcopy ["), std::string::npos) << text;
  EXPECT_EQ(text.back(), '\r');  // blanked with spaces, the cursor back at the start
}

TEST(Progress, TerminalRedrawsInPlace) {
  const std::string text = drawn(Console{.terminal = true});
  EXPECT_NE(text.find("\rcopy ["), std::string::npos) << text;
  EXPECT_NE(text.find("\x1b[K"), std::string::npos) << text;
}

}  // namespace
}  // namespace troy::cli
