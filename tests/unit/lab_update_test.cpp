// troy update's decisions, each on its own: which disk (a fake /sys/block),
// which version it holds (a fake fingerprint check), what to do when done,
// the machine's name (a fake /sys/class/net), and fetching files from a
// directory source, checked before they appear.
#include <gtest/gtest.h>

#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "digest.h"
#include "disks.h"
#include "manifest.h"
#include "source.h"
#include "update.h"
#include "versions.h"

// Not in troy::cli: the suite LabSource would clash with the class it tests.
namespace troy::lab_update_test {
namespace {

using namespace troy::cli;
namespace fs = std::filesystem;

// A fresh folder per test, removed afterwards.
class TempDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/troy-lab-update-test.XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    root_ = pattern;
  }
  void TearDown() override {
    std::error_code ignored;
    fs::remove_all(root_, ignored);
  }
  // Writes `bytes` to root/relative, creating the folders on the way.
  void write(const std::string& relative, const std::string& bytes) const {
    const fs::path path = root_ / relative;
    fs::create_directories(path.parent_path());
    std::ofstream file(path, std::ios::binary | std::ios::trunc);
    file.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    ASSERT_TRUE(file.good()) << path;
  }
  std::string read(const std::string& relative) const {
    std::ifstream file(root_ / relative, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(file), {});
  }
  std::string path(const std::string& relative = "") const { return (root_ / relative).string(); }
  bool exists(const std::string& relative) const { return fs::exists(root_ / relative); }

  fs::path root_;
};

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// ---------------------------------------------------------------------------
// Disks

// The SCSI unit serial number page: byte 1 is the page code 0x80, byte 3 the
// length, then the serial in ASCII, padded.
std::string vpd_pg80(const std::string& padded_serial) {
  std::string page = {'\0', '\x80', '\0', static_cast<char>(padded_serial.size())};
  return page + padded_serial;
}

class LabDisks : public TempDirTest {
 protected:
  // A fake /sys/block: one disk of each kind, and the devices list_disks skips.
  void make_lab_machine() const {
    write("block/vda/size", "41943040\n");
    write("block/vda/serial", "LAB-0042\n");
    write("block/sda/size", "976773168\n");
    write("block/sda/device/model", "Samsung SSD 860 \n");
    write("block/sda/device/vpd_pg80", vpd_pg80("S3Z9NB0K123456      "));
    write("block/nvme0n1/size", "1953525168\n");
    write("block/nvme0n1/device/model", "WDC WDS100T2B0C-00PXH0                  \n");
    write("block/nvme0n1/device/serial", std::string("21021R801234        \0\0\0\n", 24));
    for (const char* skipped : {"loop0", "ram0", "sr0", "dm-0", "md0", "nbd0", "zram0"})
      write(std::string("block/") + skipped + "/size", "2048\n");
  }
  std::string block() const { return path("block"); }
};

TEST_F(LabDisks, ListsEachKindOfDiskAndSkipsTheOthers) {
  make_lab_machine();
  auto disks = list_disks(block());
  ASSERT_TRUE(disks) << disks.error().message;
  ASSERT_EQ(disks->size(), 3u);
  EXPECT_EQ((*disks)[0].name, "nvme0n1");
  EXPECT_EQ((*disks)[1].name, "sda");
  EXPECT_EQ((*disks)[2].name, "vda");
}

TEST_F(LabDisks, VirtioSerialFromTheDiskFolder) {
  make_lab_machine();
  auto disk = read_disk_info(block(), "vda");
  ASSERT_TRUE(disk) << disk.error().message;
  EXPECT_EQ(disk->size, 41943040ull * 512);
  EXPECT_EQ(disk->model, "");
  EXPECT_EQ(disk->serial, "LAB-0042");
}

TEST_F(LabDisks, SataModelTrimmedAndSerialFromVpdPage80) {
  make_lab_machine();
  auto disk = read_disk_info(block(), "sda");
  ASSERT_TRUE(disk) << disk.error().message;
  EXPECT_EQ(disk->size, 976773168ull * 512);
  EXPECT_EQ(disk->model, "Samsung SSD 860");
  EXPECT_EQ(disk->serial, "S3Z9NB0K123456");
}

TEST_F(LabDisks, VpdPageWithAnotherPageCodeGivesNoSerial) {
  write("block/sda/size", "8\n");
  std::string page = vpd_pg80("S3Z9NB0K");
  page[1] = '\x83';
  write("block/sda/device/vpd_pg80", page);
  auto disk = read_disk_info(block(), "sda");
  ASSERT_TRUE(disk) << disk.error().message;
  EXPECT_EQ(disk->serial, "");
}

TEST_F(LabDisks, VpdPageLengthBeyondTheFileIsCutToTheFile) {
  write("block/sda/size", "8\n");
  write("block/sda/device/vpd_pg80", std::string("\0\x80\0\xff", 4) + "WD-1234  ");
  auto disk = read_disk_info(block(), "sda");
  ASSERT_TRUE(disk) << disk.error().message;
  EXPECT_EQ(disk->serial, "WD-1234");
}

TEST_F(LabDisks, NvmeModelAndSerialTrimmedOfSpacesAndNuls) {
  make_lab_machine();
  auto disk = read_disk_info(block(), "nvme0n1");
  ASSERT_TRUE(disk) << disk.error().message;
  EXPECT_EQ(disk->size, 1953525168ull * 512);
  EXPECT_EQ(disk->model, "WDC WDS100T2B0C-00PXH0");
  EXPECT_EQ(disk->serial, "21021R801234");
}

TEST_F(LabDisks, NonNumericSizeIsAnErrorNamingTheFile) {
  make_lab_machine();
  write("block/sdb/size", "12x4\n");
  auto disks = list_disks(block());
  ASSERT_FALSE(disks);
  EXPECT_TRUE(contains(disks.error().message, block() + "/sdb/size")) << disks.error().message;
}

TEST_F(LabDisks, MissingSizeIsAnErrorNamingTheFile) {
  make_lab_machine();
  write("block/sdb/device/model", "Disk\n");
  auto disks = list_disks(block());
  ASSERT_FALSE(disks);
  EXPECT_TRUE(contains(disks.error().message, block() + "/sdb/size")) << disks.error().message;
}

TEST_F(LabDisks, SizeTooLargeInBytesIsAnError) {
  write("block/sda/size", "36028797018963968\n");  // 2^55 sectors: 2^64 bytes
  auto disk = read_disk_info(block(), "sda");
  ASSERT_FALSE(disk);
  EXPECT_TRUE(contains(disk.error().message, "/sda/size")) << disk.error().message;
}

TEST_F(LabDisks, EmptyFolderGivesNoDisks) {
  fs::create_directories(root_ / "block");
  auto disks = list_disks(block());
  ASSERT_TRUE(disks) << disks.error().message;
  EXPECT_TRUE(disks->empty());
}

TEST_F(LabDisks, MissingFolderIsAnError) {
  auto disks = list_disks(path("no-such-block"));
  ASSERT_FALSE(disks);
  EXPECT_TRUE(contains(disks.error().message, path("no-such-block"))) << disks.error().message;
}

const DiskInfo kSamsung{"sda", 500107862016, "Samsung SSD 860", "S3Z9NB0K"};
const DiskInfo kIntel{"sdb", 240057409536, "INTEL SSDSC2BW240A4", "BTJR1234"};
const DiskInfo kVirtio{"vda", 21474836480, "", "AB-77"};

TEST_F(LabDisks, RuleSizeMustMatchExactly) {
  EXPECT_TRUE(rule_matches("size=500107862016", kSamsung));
  EXPECT_FALSE(rule_matches("size=500107862017", kSamsung));
  EXPECT_FALSE(rule_matches("size=500107862", kSamsung));
}

TEST_F(LabDisks, RuleModelAndSerialAreGlobs) {
  EXPECT_TRUE(rule_matches("model=Samsung*", kSamsung));
  EXPECT_FALSE(rule_matches("model=Samsung*", kIntel));
  EXPECT_FALSE(rule_matches("model=Samsung", kSamsung));  // a pattern matches the whole model
  EXPECT_TRUE(rule_matches("serial=S3Z?NB0K", kSamsung));
  EXPECT_FALSE(rule_matches("serial=S3Z?NB0K", kIntel));
  EXPECT_TRUE(rule_matches("serial=[AB]*", kVirtio));
  EXPECT_TRUE(rule_matches("serial=[AB]*", kIntel));
  EXPECT_FALSE(rule_matches("serial=[AB]*", kSamsung));
  EXPECT_FALSE(rule_matches("model=?*", kVirtio));  // no model in sysfs
}

TEST_F(LabDisks, RuleNeedsEveryKey) {
  EXPECT_TRUE(rule_matches("size=500107862016 model=Samsung* serial=S3Z?NB0K", kSamsung));
  EXPECT_FALSE(rule_matches("size=500107862016 model=INTEL*", kSamsung));
  EXPECT_FALSE(rule_matches("size=240057409536 model=Samsung*", kSamsung));
  EXPECT_FALSE(rule_matches("model=Samsung* serial=X*", kSamsung));
}

TEST_F(LabDisks, RuleWithAnUnknownKeyOrNoKeyMatchesNothing) {
  EXPECT_FALSE(rule_matches("colour=red", kSamsung));
  EXPECT_FALSE(rule_matches("size=500107862016 colour=red", kSamsung));
  EXPECT_FALSE(rule_matches("model", kSamsung));
  EXPECT_FALSE(rule_matches("", kSamsung));
}

TEST_F(LabDisks, ChooseTheOneMatchingDisk) {
  auto disk = choose_disk({kSamsung, kIntel, kVirtio}, {"model=INTEL*"}, std::nullopt);
  ASSERT_TRUE(disk) << disk.error().message;
  EXPECT_EQ(disk->name, "sdb");
}

TEST_F(LabDisks, ChooseNoMatchListsTheDisks) {
  auto disk = choose_disk({kSamsung, kIntel}, {"model=WDC*"}, std::nullopt);
  ASSERT_FALSE(disk);
  const std::string& message = disk.error().message;
  EXPECT_TRUE(contains(message, "no disk matches")) << message;
  EXPECT_TRUE(contains(message, "model=WDC*")) << message;
  EXPECT_TRUE(contains(message, describe(kSamsung))) << message;
  EXPECT_TRUE(contains(message, describe(kIntel))) << message;
}

TEST_F(LabDisks, ChooseAmongNoDisksIsNoMatch) {
  auto disk = choose_disk({}, {"model=WDC*"}, std::nullopt);
  ASSERT_FALSE(disk);
  EXPECT_TRUE(contains(disk.error().message, "no disk matches")) << disk.error().message;
}

TEST_F(LabDisks, ChooseTwoMatchesRefusesToGuess) {
  auto disk = choose_disk({kSamsung, kIntel, kVirtio}, {"model=*S*"}, std::nullopt);
  ASSERT_FALSE(disk);
  const std::string& message = disk.error().message;
  EXPECT_TRUE(contains(message, "refusing to guess")) << message;
  EXPECT_TRUE(contains(message, "sda")) << message;
  EXPECT_TRUE(contains(message, "sdb")) << message;
  EXPECT_FALSE(contains(message, "vda")) << message;
}

TEST_F(LabDisks, ChooseWithSeveralRulesTakesAnyMatch) {
  auto disk = choose_disk({kSamsung, kIntel}, {"model=WDC*", "serial=BTJR*"}, std::nullopt);
  ASSERT_TRUE(disk) << disk.error().message;
  EXPECT_EQ(disk->name, "sdb");
}

TEST_F(LabDisks, ChooseWithSeveralRulesMatchingTwoDisksRefuses) {
  auto disk = choose_disk({kSamsung, kIntel}, {"model=Samsung*", "serial=BTJR*"}, std::nullopt);
  ASSERT_FALSE(disk);
  EXPECT_TRUE(contains(disk.error().message, "refusing to guess")) << disk.error().message;
}

TEST_F(LabDisks, ChooseWithoutRulesIsAnError) {
  auto disk = choose_disk({kSamsung}, {}, std::nullopt);
  ASSERT_FALSE(disk);
  EXPECT_TRUE(contains(disk.error().message, "no 'disk' rule")) << disk.error().message;
}

TEST_F(LabDisks, ChooseByNameOverridesTheRules) {
  auto disk = choose_disk({kSamsung, kIntel}, {"model=Samsung*"}, "sdb");
  ASSERT_TRUE(disk) << disk.error().message;
  EXPECT_EQ(disk->name, "sdb");
  auto without_rules = choose_disk({kSamsung, kIntel}, {}, "sda");
  ASSERT_TRUE(without_rules) << without_rules.error().message;
  EXPECT_EQ(without_rules->name, "sda");
}

TEST_F(LabDisks, ChooseByNameNotFoundListsTheDisks) {
  auto disk = choose_disk({kSamsung, kIntel}, {"model=Samsung*"}, "sdc");
  ASSERT_FALSE(disk);
  const std::string& message = disk.error().message;
  EXPECT_TRUE(contains(message, "no disk matches")) << message;
  EXPECT_TRUE(contains(message, "sdc")) << message;
  EXPECT_TRUE(contains(message, describe(kSamsung))) << message;
}

TEST_F(LabDisks, DescribeNamesSizeModelAndSerial) {
  EXPECT_EQ(describe(kSamsung), "sda (500107862016 bytes, model 'Samsung SSD 860', serial 'S3Z9NB0K')");
}

// ---------------------------------------------------------------------------
// Versions

// A base and up to 3 deltas, named v1 (the base), v2, v3, v4.
Manifest manifest_with(size_t deltas) {
  const char* const names[] = {"v1", "v2", "v3", "v4"};
  Manifest manifest;
  manifest.disk_size = 1 << 20;
  for (size_t i = 0; i <= deltas; i++) {
    ManifestVersion version;
    version.name = names[i];
    if (i > 0) version.from = manifest.versions.back().name;
    manifest.versions.push_back(version);
  }
  return manifest;
}

// A fingerprint check that answers from a table and records what it was asked.
struct FakeCheck {
  std::map<size_t, DiskState> states;
  std::vector<size_t> asked;
  DeltaCheck callback() {
    return [this](size_t index) -> Result<DiskState> {
      asked.push_back(index);
      const auto found = states.find(index);
      if (found == states.end()) return Error{"asked about delta " + std::to_string(index)};
      return found->second;
    };
  }
};

using S = DiskState;

TEST(LabVersions, OnlyTheBasePublishedChecksNothing) {
  const Manifest manifest = manifest_with(0);
  FakeCheck check;
  auto held = find_held_version(manifest, check.callback());
  ASSERT_TRUE(held) << held.error().message;
  EXPECT_TRUE(check.asked.empty());
  EXPECT_EQ(held->first_to_apply, manifest.versions.size());
}

TEST(LabVersions, NewAtTheNewestCostsOneCheck) {
  const Manifest manifest = manifest_with(3);
  FakeCheck check{{{3, S::New}}, {}};
  auto held = find_held_version(manifest, check.callback());
  ASSERT_TRUE(held) << held.error().message;
  EXPECT_EQ(check.asked, std::vector<size_t>{3});
  EXPECT_EQ(held->first_to_apply, 4u);
  EXPECT_EQ(held->held, "v4");
  EXPECT_EQ(held->checks, std::vector<std::string>{"v4: new"});
}

TEST(LabVersions, NewAtAnOlderDeltaAppliesTheOnesAfterIt) {
  const Manifest manifest = manifest_with(3);
  FakeCheck check{{{3, S::Foreign}, {2, S::Base}, {1, S::New}}, {}};
  auto held = find_held_version(manifest, check.callback());
  ASSERT_TRUE(held) << held.error().message;
  EXPECT_EQ(check.asked, (std::vector<size_t>{3, 2, 1}));
  EXPECT_EQ(held->first_to_apply, 2u);
  EXPECT_EQ(held->held, "v2");
  EXPECT_EQ(held->checks.size(), 3u);
}

TEST(LabVersions, PartialAtTheNewestReappliesIt) {
  const Manifest manifest = manifest_with(3);
  FakeCheck check{{{3, S::Partial}}, {}};
  auto held = find_held_version(manifest, check.callback());
  ASSERT_TRUE(held) << held.error().message;
  EXPECT_EQ(check.asked, std::vector<size_t>{3});
  EXPECT_EQ(held->first_to_apply, 3u);
  EXPECT_EQ(held->held, "incomplete");
}

TEST(LabVersions, PartialAtAnOlderDeltaReappliesFromIt) {
  const Manifest manifest = manifest_with(3);
  FakeCheck check{{{3, S::Base}, {2, S::Partial}}, {}};
  auto held = find_held_version(manifest, check.callback());
  ASSERT_TRUE(held) << held.error().message;
  EXPECT_EQ(check.asked, (std::vector<size_t>{3, 2}));
  EXPECT_EQ(held->first_to_apply, 2u);
  EXPECT_EQ(held->held, "incomplete");
}

TEST(LabVersions, BaseDownToTheFirstDeltaHoldsTheBase) {
  const Manifest manifest = manifest_with(3);
  FakeCheck check{{{3, S::Base}, {2, S::Base}, {1, S::Base}}, {}};
  auto held = find_held_version(manifest, check.callback());
  ASSERT_TRUE(held) << held.error().message;
  EXPECT_EQ(check.asked, (std::vector<size_t>{3, 2, 1}));
  EXPECT_EQ(held->first_to_apply, 1u);
  EXPECT_EQ(held->held, "v1");
  EXPECT_EQ(held->checks, (std::vector<std::string>{"v4: base", "v3: base", "v2: base"}));
}

TEST(LabVersions, BaseWithASingleDelta) {
  const Manifest manifest = manifest_with(1);
  FakeCheck check{{{1, S::Base}}, {}};
  auto held = find_held_version(manifest, check.callback());
  ASSERT_TRUE(held) << held.error().message;
  EXPECT_EQ(check.asked, std::vector<size_t>{1});
  EXPECT_EQ(held->first_to_apply, 1u);
  EXPECT_EQ(held->held, "v1");
}

TEST(LabVersions, ForeignAtTheNewestThenBaseBelowHoldsTheBase) {
  const Manifest manifest = manifest_with(2);
  FakeCheck check{{{2, S::Foreign}, {1, S::Base}}, {}};
  auto held = find_held_version(manifest, check.callback());
  ASSERT_TRUE(held) << held.error().message;
  EXPECT_EQ(check.asked, (std::vector<size_t>{2, 1}));
  EXPECT_EQ(held->first_to_apply, 1u);
  EXPECT_EQ(held->held, "v1");
}

TEST(LabVersions, ForeignEverywhereIsAnError) {
  const Manifest manifest = manifest_with(3);
  FakeCheck check{{{3, S::Foreign}, {2, S::Foreign}, {1, S::Foreign}}, {}};
  auto held = find_held_version(manifest, check.callback());
  ASSERT_FALSE(held);
  EXPECT_TRUE(contains(held.error().message, "none of the published versions")) << held.error().message;
  EXPECT_EQ(check.asked, (std::vector<size_t>{3, 2, 1}));
}

TEST(LabVersions, BaseAboveForeignAtTheFirstDeltaIsAnError) {
  const Manifest manifest = manifest_with(2);
  FakeCheck check{{{2, S::Base}, {1, S::Foreign}}, {}};
  auto held = find_held_version(manifest, check.callback());
  ASSERT_FALSE(held);
  EXPECT_TRUE(contains(held.error().message, "none of the published versions")) << held.error().message;
}

TEST(LabVersions, ACheckThatFailsStopsTheWalkWithItsError) {
  const Manifest manifest = manifest_with(3);
  FakeCheck check{{{3, S::Base}}, {}};  // delta 2 is not in the table: its check fails
  auto held = find_held_version(manifest, check.callback());
  ASSERT_FALSE(held);
  EXPECT_EQ(held.error().message, "asked about delta 2");
  EXPECT_EQ(check.asked, (std::vector<size_t>{3, 2}));
}

// ---------------------------------------------------------------------------
// Update: what to do when done, and this machine's name

class LabUpdate : public TempDirTest {
 protected:
  void interface(const std::string& name, const std::string& address, const std::string& state) const {
    write("class/net/" + name + "/address", address + "\n");
    write("class/net/" + name + "/operstate", state + "\n");
  }
};

TEST_F(LabUpdate, AfterDefaultsToReboot) { EXPECT_EQ(decide_after("", ""), "reboot"); }
TEST_F(LabUpdate, AfterPoweroffRequestedOnTheCommandLine) { EXPECT_EQ(decide_after("", "poweroff"), "poweroff"); }
TEST_F(LabUpdate, AfterPoweroffFromTheManifest) { EXPECT_EQ(decide_after("poweroff", ""), "poweroff"); }
TEST_F(LabUpdate, AfterRebootIgnoresAnotherRequest) { EXPECT_EQ(decide_after("reboot", "shell"), "reboot"); }
TEST_F(LabUpdate, AfterGarbageRequestedReboots) { EXPECT_EQ(decide_after("", "garbage"), "reboot"); }

TEST_F(LabUpdate, MachineIdIsTheInterfaceThatIsUp) {
  interface("lo", "00:00:00:00:00:00", "unknown");
  interface("enp1s0", "52:54:00:aa:aa:01", "down");
  interface("enp2s0", "52:54:00:bb:bb:02", "up");
  interface("wlp3s0", "52:54:00:cc:cc:03", "up");
  EXPECT_EQ(machine_id(path()), "52:54:00:bb:bb:02");
}

TEST_F(LabUpdate, MachineIdWithNoneUpIsTheFirstWithAnAddress) {
  interface("lo", "00:00:00:00:00:00", "unknown");
  interface("bond0", "00:00:00:00:00:00", "down");
  interface("enp1s0", "52:54:00:aa:aa:01", "down");
  interface("enp2s0", "52:54:00:bb:bb:02", "down");
  EXPECT_EQ(machine_id(path()), "52:54:00:aa:aa:01");
}

TEST_F(LabUpdate, MachineIdSkipsAZeroAddressThatIsUp) {
  interface("dummy0", "00:00:00:00:00:00", "up");
  interface("enp1s0", "52:54:00:aa:aa:01", "down");
  EXPECT_EQ(machine_id(path()), "52:54:00:aa:aa:01");
}

TEST_F(LabUpdate, MachineIdNeverTheLoopback) {
  interface("lo", "11:22:33:44:55:66", "up");
  EXPECT_EQ(machine_id(path()), "unknown");
}

TEST_F(LabUpdate, MachineIdWithNoInterfaceIsUnknown) {
  EXPECT_EQ(machine_id(path()), "unknown");
  fs::create_directories(root_ / "class/net");
  EXPECT_EQ(machine_id(path()), "unknown");
  interface("enp1s0", "", "up");
  EXPECT_EQ(machine_id(path()), "unknown");
}

// ---------------------------------------------------------------------------
// Source: a directory

std::string sha256_hex(const std::string& bytes) { return to_hex(sha256(std::as_bytes(std::span(bytes)))); }

// Bytes that differ from one offset to the next, over more than one read chunk (1 MiB).
std::string delta_bytes(size_t size) {
  std::string bytes(size, '\0');
  uint32_t state = 12345;
  for (char& c : bytes) {
    state = state * 1103515245u + 12345u;
    c = static_cast<char>(state >> 24);
  }
  return bytes;
}

class LabSource : public TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    bytes_ = delta_bytes((5 << 20) / 2);
    write("served/versions/v2.avhdx", bytes_);
    fs::create_directories(root_ / "work");
    auto opened = troy::cli::LabSource::open(path("served"));
    ASSERT_TRUE(opened) << opened.error().message;
    source_ = std::move(*opened);
  }
  Result<void> fetch(uint64_t size, const std::string& sha) {
    return source_->fetch_checked("versions/v2.avhdx", size, sha, destination());
  }
  std::string destination() const { return path("work/v2.avhdx"); }
  void expect_refused(const Result<void>& result, const std::string& words) const {
    ASSERT_FALSE(result);
    EXPECT_TRUE(contains(result.error().message, path("served") + "/versions/v2.avhdx")) << result.error().message;
    EXPECT_TRUE(contains(result.error().message, words)) << result.error().message;
    EXPECT_FALSE(exists("work/v2.avhdx"));
    EXPECT_FALSE(exists("work/v2.avhdx.part"));
  }

  std::string bytes_;
  std::unique_ptr<troy::cli::LabSource> source_;
};

TEST_F(LabSource, OpenRefusesOtherSchemesAndMissingFolders) {
  EXPECT_FALSE(troy::cli::LabSource::open("ftp://x"));
  EXPECT_FALSE(troy::cli::LabSource::open("file:///tmp"));
  auto missing = troy::cli::LabSource::open(path("no-such-folder"));
  ASSERT_FALSE(missing);
  EXPECT_TRUE(contains(missing.error().message, path("no-such-folder"))) << missing.error().message;
  EXPECT_FALSE(troy::cli::LabSource::open(path("served/versions/v2.avhdx")));  // a file, not a folder
}

TEST_F(LabSource, OpenTakesAFolderOrAnHttpUrl) {
  EXPECT_EQ(source_->location(), path("served"));
  auto http = troy::cli::LabSource::open("http://127.0.0.1:9/lab/");
  ASSERT_TRUE(http) << http.error().message;
  EXPECT_EQ((*http)->location(), "http://127.0.0.1:9/lab");
}

TEST_F(LabSource, FetchSmallUpToTheCap) {
  write("served/manifest", "troy-manifest 1\n");
  auto text = source_->fetch_small("manifest", 16);
  ASSERT_TRUE(text) << text.error().message;
  EXPECT_EQ(*text, "troy-manifest 1\n");
}

TEST_F(LabSource, FetchSmallOverTheCapIsAnError) {
  write("served/manifest", "troy-manifest 1\n");
  auto text = source_->fetch_small("manifest", 15);
  ASSERT_FALSE(text);
  EXPECT_TRUE(contains(text.error().message, path("served") + "/manifest")) << text.error().message;
}

TEST_F(LabSource, FetchSmallOfAMissingFileIsAnError) {
  auto text = source_->fetch_small("manifest.sig", 4096);
  ASSERT_FALSE(text);
  EXPECT_TRUE(contains(text.error().message, path("served") + "/manifest.sig")) << text.error().message;
}

TEST_F(LabSource, FetchSmallOfAFifoIsRefusedAtOnce) {
  ASSERT_EQ(::mkfifo(path("served/manifest").c_str(), 0600), 0);
  auto text = source_->fetch_small("manifest", 4096);  // would block in open() without a writer
  ASSERT_FALSE(text);
  EXPECT_TRUE(contains(text.error().message, path("served") + "/manifest: not a regular file")) << text.error().message;
}

TEST_F(LabSource, PostJsonToAFolderIsAnError) { EXPECT_FALSE(source_->post_json("cgi-bin/report", "{}")); }

TEST_F(LabSource, FetchCheckedGoodFileAppearsWhole) {
  uint64_t last_done = 0;
  auto fetched = source_->fetch_checked("versions/v2.avhdx", bytes_.size(), sha256_hex(bytes_), destination(),
                                        [&](uint64_t done, uint64_t total) {
                                          EXPECT_EQ(total, bytes_.size());
                                          EXPECT_GT(done, last_done);
                                          last_done = done;
                                        });
  ASSERT_TRUE(fetched) << fetched.error().message;
  EXPECT_EQ(last_done, bytes_.size());
  EXPECT_TRUE(read("work/v2.avhdx") == bytes_);
  EXPECT_FALSE(exists("work/v2.avhdx.part"));
  EXPECT_TRUE(file_matches(destination(), bytes_.size(), sha256_hex(bytes_)));
}

TEST_F(LabSource, FetchCheckedShorterThanTheManifestSays) {
  expect_refused(fetch(bytes_.size() + 1, sha256_hex(bytes_)), "bytes");
}

TEST_F(LabSource, FetchCheckedLongerThanTheManifestSays) {
  expect_refused(fetch(bytes_.size() - 1, sha256_hex(bytes_.substr(0, bytes_.size() - 1))), "bytes");
}

TEST_F(LabSource, FetchCheckedWrongSha256) {
  std::string changed = bytes_;
  changed[1 << 20] ^= 1;
  expect_refused(fetch(bytes_.size(), sha256_hex(changed)), "sha256");
}

TEST_F(LabSource, FetchCheckedMissingServedFile) {
  auto fetched = source_->fetch_checked("versions/v3.avhdx", 10, sha256_hex("0123456789"), path("work/v3.avhdx"));
  ASSERT_FALSE(fetched);
  EXPECT_TRUE(contains(fetched.error().message, "versions/v3.avhdx")) << fetched.error().message;
  EXPECT_FALSE(exists("work/v3.avhdx"));
  EXPECT_FALSE(exists("work/v3.avhdx.part"));
}

TEST_F(LabSource, FetchCheckedKeepsADestinationThatAlreadyMatches) {
  write("work/v2.avhdx", bytes_);
  fs::remove(root_ / "served/versions/v2.avhdx");
  auto fetched = fetch(bytes_.size(), sha256_hex(bytes_));
  ASSERT_TRUE(fetched) << fetched.error().message;
  EXPECT_TRUE(read("work/v2.avhdx") == bytes_);
  EXPECT_FALSE(exists("work/v2.avhdx.part"));
}

TEST_F(LabSource, FetchCheckedReplacesADestinationWithOtherBytes) {
  std::string stale = bytes_;
  stale[7] ^= 1;
  write("work/v2.avhdx", stale);
  auto fetched = fetch(bytes_.size(), sha256_hex(bytes_));
  ASSERT_TRUE(fetched) << fetched.error().message;
  EXPECT_TRUE(read("work/v2.avhdx") == bytes_);
  EXPECT_FALSE(exists("work/v2.avhdx.part"));
}

TEST_F(LabSource, FetchCheckedReplacesALeftoverPartFile) {
  write("work/v2.avhdx.part", "half of an earlier download");
  auto fetched = fetch(bytes_.size(), sha256_hex(bytes_));
  ASSERT_TRUE(fetched) << fetched.error().message;
  EXPECT_TRUE(read("work/v2.avhdx") == bytes_);
  EXPECT_FALSE(exists("work/v2.avhdx.part"));
}

TEST_F(LabSource, FileMatchesNeedsSizeAndSha256) {
  write("work/x", "abc");
  EXPECT_TRUE(file_matches(path("work/x"), 3, sha256_hex("abc")));
  EXPECT_FALSE(file_matches(path("work/x"), 4, sha256_hex("abc")));
  EXPECT_FALSE(file_matches(path("work/x"), 3, sha256_hex("abd")));
  EXPECT_FALSE(file_matches(path("work/missing"), 3, sha256_hex("abc")));
  EXPECT_FALSE(file_matches(path("work"), 0, sha256_hex("")));  // a folder
}

}  // namespace
}  // namespace troy::lab_update_test
