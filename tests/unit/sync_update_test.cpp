// The payload's choice of path for a disk (issue 16): delta, sync, up to date, refuse.
#include "sync_update.h"

#include <gtest/gtest.h>

namespace troy::cli {
namespace {

Manifest lab(bool content = true) {
  Manifest manifest;
  manifest.disk_size = 1 << 20;
  for (const char* name : {"v1", "v2", "v3"}) {
    ManifestVersion version;
    version.name = name;
    if (!manifest.versions.empty()) version.from = manifest.versions.back().name;
    if (content) {
      version.content_index = {std::string("versions/") + name + ".cidx", 100, std::string(64, 'a')};
      version.held_table = {std::string("versions/") + name + ".held", 100, std::string(64, 'b')};
    }
    manifest.versions.push_back(version);
  }
  return manifest;
}

TEST(SyncPath, ADiskAtAVersionTakesTheDeltasFromIt) {
  const PathChoice choice = choose_path(lab(), 0, false);
  EXPECT_EQ(choice.path, DiskPath::Delta);
  EXPECT_EQ(choice.first_to_apply, 1u);
  EXPECT_EQ(choice.held, "v1");
  EXPECT_NE(choice.why.find("holds v1 exactly"), std::string::npos);
}

TEST(SyncPath, ADiskAtTheNewestIsUpToDate) { EXPECT_EQ(choose_path(lab(), 2, false).path, DiskPath::UpToDate); }

TEST(SyncPath, ADiskAtNoVersionIsSyncedUnlessTheManifestRefuses) {
  Manifest manifest = lab();
  PathChoice choice = choose_path(manifest, std::nullopt, false);
  EXPECT_EQ(choice.path, DiskPath::Sync);
  EXPECT_NE(choice.why.find("sync to v3"), std::string::npos);
  manifest.on_foreign = "refuse";
  choice = choose_path(manifest, std::nullopt, false);
  EXPECT_EQ(choice.path, DiskPath::Refuse);
  EXPECT_NE(choice.why.find("on-foreign refuse"), std::string::npos);
}

TEST(SyncPath, ReimageSyncsEvenADiskAtAVersion) {
  Manifest manifest = lab();
  manifest.on_foreign = "refuse";  // the admin's flag for this machine is explicit
  const PathChoice choice = choose_path(manifest, 2, true);
  EXPECT_EQ(choice.path, DiskPath::Sync);
  EXPECT_NE(choice.why.find("reimage"), std::string::npos);
}

TEST(SyncPath, WithoutAContentIndexNothingCanBeSynced) {
  const Manifest manifest = lab(false);
  EXPECT_FALSE(decides_by_content(manifest));
  EXPECT_EQ(choose_path(manifest, std::nullopt, false).path, DiskPath::Refuse);
  EXPECT_EQ(choose_path(manifest, std::nullopt, true).path, DiskPath::Refuse);
  EXPECT_TRUE(decides_by_content(lab()));
}

TEST(SyncPath, ReimageFlagIsAFileNamedByTheMac) {
  EXPECT_EQ(reimage_flag_path("52:54:00:AB:cd:01"), "reimage/52-54-00-ab-cd-01");
}

}  // namespace
}  // namespace troy::cli
