// The manifest's lines for sync (issue 16): content-index, held-table, on-foreign.
#include <gtest/gtest.h>

#include "manifest.h"

namespace troy::cli {
namespace {

const std::string kSha(64, 'a');

std::string manifest_with(const std::string& lines) {
  return "troy-manifest 1\ndisk-size 1048576\nversion base base 0123\n" + lines;
}

TEST(ManifestSync, ContentIndexHeldTableAndOnForeignRoundTrip) {
  const std::string text = manifest_with("content-index base versions/base.cidx 128 " + kSha +
                                         "\nheld-table base versions/base.held 96 " + kSha + "\non-foreign refuse\n");
  auto manifest = parse_manifest(text, "m");
  ASSERT_TRUE(manifest.ok()) << manifest.error().message;
  EXPECT_EQ(manifest->versions[0].content_index.path, "versions/base.cidx");
  EXPECT_EQ(manifest->versions[0].content_index.size, 128u);
  EXPECT_EQ(manifest->versions[0].held_table.path, "versions/base.held");
  EXPECT_EQ(manifest->on_foreign, "refuse");
  auto again = parse_manifest(serialize(*manifest), "m");
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(again->versions[0].held_table.sha256, kSha);
  EXPECT_EQ(again->on_foreign, "refuse");
}

TEST(ManifestSync, RefusesBadLinesNamingTheLine) {
  for (const std::string& bad : std::vector<std::string>{
           "content-index nosuch versions/x.cidx 1 " + kSha + "\n",
           "content-index base ../x.cidx 1 " + kSha + "\n",
           "content-index base versions/x.cidx -1 " + kSha + "\n",
           "content-index base versions/x.cidx 1 ABC\n",
           "content-index base versions/x.cidx 1\n",
           "held-table base versions/x 1 " + kSha + "\nheld-table base versions/x 1 " + kSha + "\n",
           std::string("on-foreign maybe\n"),
           std::string("on-foreign sync\non-foreign sync\n"),
       }) {
    auto manifest = parse_manifest(manifest_with(bad), "SERVED/manifest");
    ASSERT_FALSE(manifest.ok()) << bad;
    EXPECT_NE(manifest.error().message.find("SERVED/manifest: line "), std::string::npos) << manifest.error().message;
  }
}

}  // namespace
}  // namespace troy::cli
