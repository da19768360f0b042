// Unit tests of the --json and --stats helpers (tools/json_output.h): UTF-8
// validation, lossy_paths, never throwing on file names that are bytes, the
// --stats flattening and the short summary figures.
#include "json_output.h"

#include <gtest/gtest.h>

namespace troy::cli {
namespace {

TEST(JsonOutput, ValidUtf8) {
  EXPECT_TRUE(valid_utf8(""));
  EXPECT_TRUE(valid_utf8("plain.vhdx"));
  EXPECT_TRUE(valid_utf8("\xc3\xa9t\xc3\xa9.vhdx"));       // été
  EXPECT_TRUE(valid_utf8("\xf0\x9f\x98\x80"));             // U+1F600
  EXPECT_FALSE(valid_utf8("x\xffy.vhdx"));
  EXPECT_FALSE(valid_utf8("\xc3"));                        // cut short
  EXPECT_FALSE(valid_utf8("\xc0\xaf"));                    // overlong '/'
  EXPECT_FALSE(valid_utf8("\xed\xa0\x80"));                // a UTF-16 surrogate
  EXPECT_FALSE(valid_utf8("\xf4\x90\x80\x80"));            // past U+10FFFF
}

TEST(JsonOutput, InvalidUtf8AnywhereIsFound) {
  EXPECT_FALSE(has_invalid_utf8(Json{{"path", "a.vhdx"}, {"list", {"b", "c"}}}));
  EXPECT_TRUE(has_invalid_utf8(Json{{"list", {"b", "x\xffy"}}}));
  EXPECT_TRUE(has_invalid_utf8(Json{{"nested", {{"path", "x\xffy"}}}}));
  Json keyed = Json::object();
  keyed["x\xff"] = 1;
  EXPECT_TRUE(has_invalid_utf8(keyed));
}

TEST(JsonOutput, LineOfANameThatIsNotUtf8IsValidJsonAndSaysLossy) {
  const std::string line = json_line(Json{{"command", "info"}, {"image", "x\xffy.vhdx"}});
  EXPECT_EQ(line.find('\n'), std::string::npos);
  EXPECT_TRUE(valid_utf8(line));
  const Json back = Json::parse(line);  // a strict parser accepts it
  EXPECT_EQ(back["image"], "x\xef\xbf\xbdy.vhdx");  // U+FFFD in place of the byte
  EXPECT_EQ(back["lossy_paths"], true);
  EXPECT_EQ(Json::parse(json_line(Json{{"image", "a.vhdx"}}))["lossy_paths"], false);
}

TEST(JsonOutput, StatsLinesFlattenNestedValues) {
  const Json object = {{"bytes_written", 1048576},
                       {"image", "a.vhdx"},
                       {"undo", nullptr},
                       {"relinked", {"b.avhdx", "c.avhdx"}},
                       {"removed", Json::array()},
                       {"log", {{"state", "clean"}, {"entries", 0}}},
                       {"chain", {{{"path", "a"}}, {{"path", "b"}}}}};
  const std::vector<std::string> want = {"bytes_written: 1048576", "image: a.vhdx",      "undo: -",
                                         "relinked: b.avhdx, c.avhdx", "removed: -",     "log.state: clean",
                                         "log.entries: 0",          "chain.0.path: a",   "chain.1.path: b"};
  EXPECT_EQ(stats_lines(object), want);
}

TEST(JsonOutput, ShortFigures) {
  EXPECT_EQ(short_duration(2.04), "2.0 s");
  EXPECT_EQ(short_duration(-1), "0.0 s");
  EXPECT_EQ(short_duration(62), "0:01:02");
  EXPECT_EQ(short_duration(3723), "1:02:03");
  EXPECT_EQ(short_rate(110ull << 20, 2.0), "55 MiB/s");
  EXPECT_EQ(short_rate(1, 0), "-");
  EXPECT_EQ(bytes_per_second(1000, 0), 0u);
  EXPECT_EQ(bytes_per_second(3000, 2), 1500u);
  EXPECT_EQ(count_of(1, "run"), "1 run");
  EXPECT_EQ(count_of(52, "run"), "52 runs");
  EXPECT_DOUBLE_EQ(json_seconds(1.23456), 1.235);
}

}  // namespace
}  // namespace troy::cli
