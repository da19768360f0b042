#include "suggest.h"

#include <gtest/gtest.h>

namespace troy::cli {
namespace {

const std::vector<std::string> kCommands = {"info",     "check",    "convert",     "create", "capture",
                                            "diff",     "merge",    "rollback",    "relink", "apply",
                                            "fingerprint", "publish", "verify-manifest", "lab", "update", "help"};

TEST(EditDistance, CountsInsertDeleteReplaceAndSwap) {
  EXPECT_EQ(edit_distance("info", "info"), 0u);
  EXPECT_EQ(edit_distance("infoo", "info"), 1u);
  EXPECT_EQ(edit_distance("inf", "info"), 1u);
  EXPECT_EQ(edit_distance("inxo", "info"), 1u);
  EXPECT_EQ(edit_distance("ifno", "info"), 1u);
  EXPECT_EQ(edit_distance("", "abc"), 3u);
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3u);
}

TEST(EditDistance, IgnoresCase) { EXPECT_EQ(edit_distance("INFO", "info"), 0u); }

TEST(Nearest, FindsTheMistypedCommand) {
  EXPECT_EQ(nearest("infoo", kCommands), "info");
  EXPECT_EQ(nearest("chekc", kCommands), "check");
  EXPECT_EQ(nearest("rolback", kCommands), "rollback");
  EXPECT_EQ(nearest("fingerprnt", kCommands), "fingerprint");
  EXPECT_EQ(nearest("Merge", kCommands), "merge");
}

TEST(Nearest, SuggestsNothingForAWordFarFromEveryCandidate) {
  EXPECT_EQ(nearest("frobnicate", kCommands), std::nullopt);
  EXPECT_EQ(nearest("xyz", kCommands), std::nullopt);
  EXPECT_EQ(nearest("", kCommands), std::nullopt);
  EXPECT_EQ(nearest("--", kCommands), std::nullopt);
  EXPECT_EQ(nearest("info", {}), std::nullopt);
}

TEST(Nearest, ComparesOptionsWithoutTheirDashes) {
  const std::vector<std::string> options = {"--help", "-h", "--type", "--block-size", "--sector-size", "--overwrite",
                                            "-f", "--format", "--parent"};
  EXPECT_EQ(nearest("--typ", options), "--type");
  EXPECT_EQ(nearest("-type", options), "--type");
  EXPECT_EQ(nearest("--blocksize", options), "--block-size");
  EXPECT_EQ(nearest("--over", options), "--overwrite");  // the start of exactly one
  EXPECT_EQ(nearest("--parnet", options), "--parent");
}

TEST(Nearest, OneLetterOptionsOnlyMatchInAnotherCase) {
  const std::vector<std::string> options = {"-h", "--help", "-V", "--version", "-q", "-p"};
  EXPECT_EQ(nearest("-v", options), "-V");
  EXPECT_EQ(nearest("-x", options), std::nullopt);
}

TEST(Nearest, AmbiguousStartSuggestsNothing) {
  EXPECT_EQ(nearest("--se", {"--sector-size", "--serial"}), std::nullopt);
  EXPECT_EQ(nearest("--sec", {"--sector-size", "--serial"}), "--sector-size");
}

TEST(Nearest, TiesGoToTheFirstListed) {
  EXPECT_EQ(nearest("chec", {"check", "checx"}), "check");
  EXPECT_EQ(nearest("chec", {"checx", "check"}), "checx");
}

}  // namespace
}  // namespace troy::cli
