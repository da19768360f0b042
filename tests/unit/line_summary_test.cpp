// summarize_lines: what `troy check` and every command's warnings print
// when an image has thousands of problems of one kind.
#include "line_summary.h"

#include <gtest/gtest.h>

#include <fmt/format.h>

namespace troy::cli {
namespace {

std::vector<std::string> bat_problems(size_t count) {
  std::vector<std::string> lines;
  for (size_t i = 0; i < count; i++)
    lines.push_back(fmt::format("bad.vhd: BAT entry {} points past the end of the file (sector 0x{:x})", i, 4096 + i));
  return lines;
}

TEST(LineSummary, KindsDifferOnlyInWordsWithDigits) {
  EXPECT_EQ(line_kind("disk2.vhd: BAT entry 17 at 0x1f00"), "#.vhd: BAT entry # at #");
  EXPECT_EQ(line_kind("a: bad checksum"), "a: bad checksum");
}

TEST(LineSummary, FewLinesStayWhole) {
  const auto lines = bat_problems(20);
  const LineSummary summary = summarize_lines(lines);
  EXPECT_EQ(summary.shown, lines);
  EXPECT_TRUE(summary.omitted.empty());
  EXPECT_EQ(summary.total, 20u);
  EXPECT_EQ(summary.omitted_count(), 0u);
}

TEST(LineSummary, ManyOfAKindAreCounted) {
  const std::vector<std::string> bat = bat_problems(65024);
  std::vector<std::string> lines(bat.begin(), bat.begin() + 3);
  const std::string footer = fmt::format("bad.vhd: footer checksum is {}", "wrong");
  lines.push_back(footer);
  lines.insert(lines.end(), bat.begin() + 3, bat.end());
  const LineSummary summary = summarize_lines(lines);
  ASSERT_EQ(summary.shown.size(), 21u);
  EXPECT_EQ(summary.shown[3], footer);  // other kinds keep their place
  EXPECT_EQ(summary.shown[20], lines[20]);
  ASSERT_EQ(summary.omitted.size(), 1u);
  EXPECT_EQ(summary.omitted[0], "... and 65004 more like: " + lines[21]);
  EXPECT_EQ(summary.total, 65025u);
  EXPECT_EQ(summary.omitted_count(), 65004u);
}

TEST(LineSummary, ManyKindsAreBoundedToo) {
  std::vector<std::string> lines;
  for (int kind = 0; kind < 100; kind++)
    for (int i = 0; i < 30; i++) lines.push_back(fmt::format("img: problem {} of kind {}", i, std::string(kind + 1, 'k')));
  const LineSummary summary = summarize_lines(lines, 20, 200);
  EXPECT_EQ(summary.shown.size(), 200u);
  EXPECT_EQ(summary.omitted.size(), 21u);  // 20 kinds named, then one count
  // Kinds 0-9 show 20 and omit 10, kinds 10-99 omit all 30; kinds 0-19 are
  // named, the 80 others counted together.
  EXPECT_EQ(summary.omitted[0], "... and 10 more like: img: problem 20 of kind k");
  EXPECT_EQ(summary.omitted.back(), "... and 2400 more of other kinds");
  EXPECT_EQ(summary.omitted_count(), 2800u);
}

}  // namespace
}  // namespace troy::cli
