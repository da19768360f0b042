// Version management's decisions (issue 18): the list, a rollback's plan, a
// squash's plan and manifest, the machines counted from the stored reports,
// and a version read back from its content index and the chunk store.
#include "versions_admin.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "chunk_store.h"
#include "held_table.h"
#include "stored_version.h"
#include "sync_update.h"

namespace troy::cli {
namespace {

namespace fs = std::filesystem;

// v1 (base), v2, v3, each with a content index whose SHA-256 is its own
// (`same` makes v3's equal to v1's: a rollback).
Manifest lab(bool v3_equals_v1 = false) {
  Manifest manifest;
  manifest.disk_size = 1 << 20;
  for (const char* name : {"v1", "v2", "v3"}) {
    ManifestVersion version;
    version.name = name;
    if (!manifest.versions.empty()) {
      version.from = manifest.versions.back().name;
      version.file = std::string("versions/") + name + ".vhdx";
      version.fingerprint = std::string("versions/") + name + ".fingerprint";
      version.file_index = version.file + ".index";
      version.size = 1000 * manifest.versions.size();
      version.sha256 = version.fingerprint_sha256 = version.file_index_sha256 = std::string(64, 'd');
      version.fingerprint_size = version.file_index_size = 10;
    }
    version.image_id = std::string("00000000-0000-0000-0000-00000000000") + name[1];
    version.content_index = {std::string("versions/") + name + ".cidx", 100, std::string(64, name[1])};
    version.held_table = {std::string("versions/") + name + ".held", 100, std::string(64, 'f')};
    manifest.versions.push_back(version);
  }
  if (v3_equals_v1) manifest.versions[2].content_index.sha256 = manifest.versions[0].content_index.sha256;
  manifest.serial = 7;
  return manifest;
}

TEST(VersionRows, CountMachinesAndShowRollbacksAsTheContentTheyEqual) {
  MachineCounts machines;
  machines.by_version = {{"v1", 2}, {"v3", 5}, {"old", 1}, {"incomplete", 1}};
  const auto rows = version_rows(lab(true), machines);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].kind, "base");
  EXPECT_EQ(rows[1].kind, "delta from v1");
  EXPECT_EQ(rows[1].delta_bytes, 1000u);
  EXPECT_EQ(rows[0].machines, 2u);
  EXPECT_EQ(rows[1].machines, 0u);
  EXPECT_EQ(rows[2].machines, 5u);
  EXPECT_EQ(rows[2].same_content_as, "v1");
  EXPECT_EQ(rows[1].same_content_as, "");
  const std::string table = format_versions_table(lab(true), rows, machines);
  EXPECT_NE(table.find("same content as v1; newest"), std::string::npos) << table;
  EXPECT_NE(table.find("1 machine(s) at a version the manifest no longer lists or none (old 1): they sync to v3"),
            std::string::npos)
      << table;
  EXPECT_NE(table.find("1 machine(s) with an update cut short"), std::string::npos) << table;
}

TEST(RollbackPlan, UndoesEveryLaterDeltaUnderANewName) {
  auto plan = plan_rollback(lab(), "v1", "");
  ASSERT_TRUE(plan) << plan.error().message;
  EXPECT_EQ(plan->target, 0u);
  EXPECT_EQ(plan->name, "rollback-to-v1");
  EXPECT_EQ(plan->undone, (std::vector<size_t>{1, 2}));
  EXPECT_TRUE(plan->nothing_to_do.empty());
  plan = plan_rollback(lab(), "v2", "back");
  ASSERT_TRUE(plan);
  EXPECT_EQ(plan->name, "back");
  EXPECT_EQ(plan->undone, (std::vector<size_t>{2}));
}

TEST(RollbackPlan, ADefaultNameTakenGetsANumber) {
  Manifest manifest = lab();
  manifest.versions[2].name = "rollback-to-v1";
  auto plan = plan_rollback(manifest, "v2", "rollback-to-v1");
  ASSERT_FALSE(plan);
  EXPECT_NE(plan.error().message.find("--name rollback-to-v1: the manifest has that version already"),
            std::string::npos);
  manifest.versions[2].content_index.sha256 = std::string(64, '9');
  plan = plan_rollback(manifest, "v1", "");
  ASSERT_TRUE(plan) << plan.error().message;
  EXPECT_EQ(plan->name, "rollback-to-v1-2");
}

TEST(RollbackPlan, NothingToPublishWhenTheNewestHoldsThatContent) {
  auto plan = plan_rollback(lab(), "v3", "");
  ASSERT_TRUE(plan);
  EXPECT_NE(plan->nothing_to_do.find("v3 is the newest version already"), std::string::npos);
  plan = plan_rollback(lab(true), "v1", "");  // a rollback to v1 already published: its rerun
  ASSERT_TRUE(plan);
  EXPECT_NE(plan->nothing_to_do.find("holds v1's content already"), std::string::npos);
}

TEST(RollbackPlan, RefusesUnknownVersionsBadNamesAndVersionsWithoutContent) {
  auto plan = plan_rollback(lab(), "v9", "");
  ASSERT_FALSE(plan);
  EXPECT_EQ(plan.error().message, "--to 'v9': no such version in the manifest (it lists v1, v2, v3)");
  plan = plan_rollback(lab(), "v1", "../x");
  ASSERT_FALSE(plan);
  EXPECT_NE(plan.error().message.find("--name '../x'"), std::string::npos);
  Manifest old = lab();
  old.versions[1].content_index = {};
  plan = plan_rollback(old, "v1", "");
  ASSERT_FALSE(plan);
  EXPECT_NE(plan.error().message.find("v2 has no content index"), std::string::npos);
}

TEST(SquashPlan, DropsTheVersionsBeforeTheNewBase) {
  auto plan = plan_squash(lab(), "v2");
  ASSERT_TRUE(plan) << plan.error().message;
  EXPECT_EQ(plan->new_base, 1u);
  EXPECT_EQ(plan->dropped, (std::vector<std::string>{"v1"}));
  const Manifest squashed = squashed_manifest(lab(), *plan);
  ASSERT_EQ(squashed.versions.size(), 2u);
  const ManifestVersion& base = squashed.versions[0];
  EXPECT_TRUE(base.is_base());
  EXPECT_EQ(base.name, "v2");
  EXPECT_EQ(base.image_id, "00000000-0000-0000-0000-000000000002");  // v3's delta names it as its parent
  EXPECT_TRUE(base.file.empty() && base.fingerprint.empty() && base.file_index.empty());
  EXPECT_EQ(base.content_index.path, "versions/v2.cidx");
  EXPECT_EQ(squashed.versions[1].from, "v2");
  for (const auto& version : squashed.versions) EXPECT_TRUE(version.held_table.path.empty());
  EXPECT_EQ(squashed.serial, 7u);  // the caller stamps the next one
  // It serializes into a manifest that parses back.
  Manifest stamped = squashed;
  stamped.versions[1].held_table = {"versions/v3.s8.held", 10, std::string(64, 'c')};
  auto parsed = parse_manifest(serialize(stamped), "manifest");
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(parsed->versions.size(), 2u);
  EXPECT_EQ(listed_files(stamped),
            (std::vector<std::string>{"versions/v2.cidx", "versions/v3.vhdx", "versions/v3.fingerprint",
                                      "versions/v3.vhdx.index", "versions/v3.cidx", "versions/v3.s8.held"}));
}

TEST(SquashPlan, TheBaseIsNothingToDo) {
  auto plan = plan_squash(lab(), "v1");
  ASSERT_TRUE(plan);
  EXPECT_EQ(plan->new_base, 0u);
  EXPECT_TRUE(plan->dropped.empty());
}

TEST(SquashPlan, RefusesWhenMachinesAtDroppedVersionsCouldNotCatchUp) {
  Manifest refuse = lab();
  refuse.on_foreign = "refuse";
  auto plan = plan_squash(refuse, "v3");
  ASSERT_FALSE(plan);
  EXPECT_NE(plan.error().message.find("on-foreign refuse: machines still at v1"), std::string::npos);
  Manifest old = lab();
  old.versions[2].content_index = {};
  plan = plan_squash(old, "v2");
  ASSERT_FALSE(plan);
  EXPECT_NE(plan.error().message.find("v3 has no content index"), std::string::npos);
  plan = plan_squash(lab(), "nope");
  ASSERT_FALSE(plan);
  EXPECT_NE(plan.error().message.find("--through 'nope': no such version"), std::string::npos);
}

// A disk at v1 after a rollback to v1 holds the newest version exactly: the
// payload writes nothing to it; a disk at v3 takes the revert delta.
TEST(RollbackContent, ADiskAtTheTargetIsUpToDateAndOneAtTheOldNewestTakesTheDelta) {
  const auto index_of = [](char fill) {
    ChunkIndex index;
    index.piece_size = kMinPieceSize;
    index.total_size = 4u * kMinPieceSize;
    for (int piece = 0; piece < 4; piece++) {
      std::vector<std::byte> bytes(kMinPieceSize, std::byte(piece == 2 ? fill : 'x'));
      append_piece(index, bytes);
    }
    return index;
  };
  const std::vector<ChunkIndex> indexes = {index_of('1'), index_of('2'), index_of('3'), index_of('1')};
  const std::vector<std::string> names = {"v1", "v2", "v3", "rollback-to-v1"};
  auto table = make_held_table(indexes, names);
  ASSERT_TRUE(table);
  Manifest manifest = lab();
  ManifestVersion rollback = manifest.versions[0];
  rollback.name = "rollback-to-v1";
  rollback.from = "v3";
  manifest.versions.push_back(rollback);
  const auto disk_at = [&](size_t version) { return std::vector<Sha256>{indexes[version].pieces[2]}; };
  const auto held_v1 = held_by_content(*table, disk_at(0));
  ASSERT_EQ(held_v1, 3u);
  EXPECT_EQ(choose_path(manifest, held_v1, false).path, DiskPath::UpToDate);
  const auto held_v3 = held_by_content(*table, disk_at(2));
  const PathChoice choice = choose_path(manifest, held_v3, false);
  EXPECT_EQ(choice.path, DiskPath::Delta);
  EXPECT_EQ(choice.first_to_apply, 3u);
}

class ServedDir : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "troy-versions-admin.XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir = pattern;
  }
  void TearDown() override { fs::remove_all(dir); }
  void write(const std::string& relative, const std::string& text) {
    fs::create_directories((fs::path(dir) / relative).parent_path());
    std::ofstream(fs::path(dir) / relative) << text;
  }
  std::string dir;
};

TEST_F(ServedDir, MachinesAreCountedFromTheirBootStates) {
  write("reports/52-54-00-00-00-01.boot", R"({"result":"ok","version":"v1","time":1})");
  write("reports/52-54-00-00-00-02.boot", R"({"result":"ok","version":"v1","time":1})");
  write("reports/52-54-00-00-00-03.boot", R"({"result":"error","version":"v2","time":1})");
  write("reports/52-54-00-00-00-04.boot", "not json");
  write("reports/52-54-00-00-00-01.json", R"({"version":"v9"})");  // not a boot state
  auto counts = count_machines(dir);
  ASSERT_TRUE(counts) << counts.error().message;
  EXPECT_EQ(counts->by_version, (std::map<std::string, size_t>{{"v1", 2}, {"v2", 1}}));
  EXPECT_EQ(counts->unreadable, 1u);
}

TEST_F(ServedDir, NoReportsCountsNoMachines) {
  auto counts = count_machines(dir);
  ASSERT_TRUE(counts);
  EXPECT_TRUE(counts->by_version.empty());
}

TEST_F(ServedDir, AStoredVersionReadsItsContentAndRefusesADamagedChunk) {
  ChunkIndex index;
  index.piece_size = kMinPieceSize;
  index.total_size = 3u * kMinPieceSize;
  ChunkStoreStats stats;
  std::vector<std::byte> disk;
  for (int piece = 0; piece < 3; piece++) {
    std::vector<std::byte> bytes(kMinPieceSize, piece == 1 ? std::byte{0} : std::byte('a' + piece));
    append_piece(index, bytes);
    if (!index.is_zero(piece)) {
      ASSERT_TRUE(store_piece(dir, index.pieces[piece], bytes, stats));
    }
    disk.insert(disk.end(), bytes.begin(), bytes.end());
  }
  auto layer = open_stored_version("v1.cidx", index, dir);
  ASSERT_TRUE(layer);
  std::vector<std::byte> read(disk.size() - 100);
  ASSERT_TRUE((*layer)->read(50, read));
  EXPECT_TRUE(std::equal(read.begin(), read.end(), disk.begin() + 50));
  std::vector<Extent> extents;
  ASSERT_TRUE((*layer)->extents(0, disk.size(), extents));
  ASSERT_EQ(extents.size(), 2u);  // the zero piece is not held
  EXPECT_EQ(extents[1].offset, 2u * kMinPieceSize);
  // A chunk changed on the server's disk: an error naming it, not its bytes.
  std::ofstream(fs::path(dir) / chunk_path(index.pieces[2]), std::ios::in | std::ios::out) << "X";
  auto fresh = open_stored_version("v1.cidx", index, dir);
  std::vector<std::byte> piece(16);
  auto damaged = (*fresh)->read(2u * kMinPieceSize, piece);
  ASSERT_FALSE(damaged);
  EXPECT_NE(damaged.error().message.find("damaged or missing"), std::string::npos) << damaged.error().message;
  EXPECT_NE(damaged.error().message.find(chunk_path(index.pieces[2])), std::string::npos);
}

}  // namespace
}  // namespace troy::cli
