// Teacher check-in's decisions (tools/lab/checkin.h): who may check in (the
// hosts file's +teacher tag), hostile sizes, the signed header, and whether
// an image is a child of the newest published version.
#include <gtest/gtest.h>

#include "checkin.h"
#include "image.h"
#include "writer.h"

namespace troy::cli::checkin_test {
namespace {

constexpr uint64_t MiB = 1 << 20;
constexpr uint64_t GiB = uint64_t{1} << 30;

bool mentions(const Error& error, const std::string& text) { return error.message.find(text) != std::string::npos; }

TEST(CheckinHosts, TeacherTagParsedAndRequired) {
  auto hosts = parse_hosts("52:54:00:00:00:01  R1-00  +teacher  the teacher's desk\n"
                           "52:54:00:00:00:02  R1-01  teacher's old desk\n",
                           "hosts");
  ASSERT_TRUE(hosts.ok()) << hosts.error().message;
  EXPECT_EQ(hosts->entries[0].note, "the teacher's desk");
  EXPECT_TRUE(hosts->entries[0].has_tag(kTeacherTag));
  EXPECT_FALSE(hosts->entries[1].has_tag(kTeacherTag));  // a note saying "teacher" is no tag
  EXPECT_TRUE(may_check_in(*hosts, "52-54-00-00-00-01").ok());
  auto student = may_check_in(*hosts, "52:54:00:00:00:02");
  ASSERT_FALSE(student.ok());
  EXPECT_TRUE(mentions(student.error(), "(R1-01) is not a teacher machine: hosts line 2 has no +teacher tag"))
      << student.error().message;
  auto stranger = may_check_in(*hosts, "52:54:00:00:00:09");
  ASSERT_FALSE(stranger.ok());
  EXPECT_TRUE(mentions(stranger.error(), "is not in the hosts file hosts")) << stranger.error().message;
  EXPECT_FALSE(may_check_in(Hosts{}, "52:54:00:00:00:01").ok());  // no hosts file: nobody
}

TEST(CheckinHosts, UnknownTagIsAnError) {
  auto typo = parse_hosts("52:54:00:00:00:01  R1-00  +teachr\n", "hosts");
  ASSERT_FALSE(typo.ok());
  EXPECT_TRUE(mentions(typo.error(), "hosts:1: TAG: '+teachr' is not a tag")) << typo.error().message;
}

TEST(CheckinSize, RefusesHostileSizes) {
  const uint64_t disk = 32 * GiB;
  const uint64_t room = 500 * GiB;
  EXPECT_FALSE(checkin_size_refusal(4 * GiB, disk, room));
  EXPECT_FALSE(checkin_size_refusal(disk + kCheckinOverheadBytes, disk, room));
  auto huge = checkin_size_refusal(disk + kCheckinOverheadBytes + 1, disk, room);
  ASSERT_TRUE(huge);
  EXPECT_EQ(huge->status, "413 Payload Too Large");
  auto absurd = checkin_size_refusal(UINT64_MAX, disk, room);
  ASSERT_TRUE(absurd);
  EXPECT_EQ(absurd->status, "413 Payload Too Large");
  auto tiny = checkin_size_refusal(100, disk, room);
  ASSERT_TRUE(tiny);
  EXPECT_EQ(tiny->status, "400 Bad Request");
  auto full = checkin_size_refusal(4 * GiB, disk, 4 * GiB + kInboxReserveBytes - 1);
  ASSERT_TRUE(full);
  EXPECT_EQ(full->status, "507 Insufficient Storage");
  EXPECT_FALSE(checkin_size_refusal(4 * GiB, disk, 4 * GiB + kInboxReserveBytes));
  EXPECT_TRUE(checkin_size_refusal(MiB, disk, kInboxReserveBytes / 2));  // less free than the reserve
}

TEST(CheckinHeader, ParsesWhatItFormatsAndRefusesTheRest) {
  const std::string sha(64, 'a');
  const std::string hmac(64, '0');
  const CheckinHeader header{"52-54-00-00-00-01", 7, 9437184, sha, hmac};
  auto parsed = parse_checkin_header(format_checkin_header(header));
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed->machine, header.machine);
  EXPECT_EQ(parsed->counter, 7u);
  EXPECT_EQ(parsed->size, 9437184u);
  EXPECT_EQ(checkin_signed_text("52-54-00-00-00-01", 7, 9437184, sha),
            "troy-checkin 1 52-54-00-00-00-01 7 9437184 " + sha);
  const std::pair<std::string, std::string> bad[] = {
      {"", "missing"},
      {"52-54-00-00-00-01 7 9437184 " + sha, "not 'MACHINE COUNTER SIZE SHA256 HMAC'"},
      {"../../etc 7 9 " + sha + " " + hmac, "MACHINE: not a MAC address"},
      {"52-54-00-00-00-01 -7 9 " + sha + " " + hmac, "COUNTER: not a whole number"},
      {"52-54-00-00-00-01 7 99999999999999999999999 " + sha + " " + hmac, "SIZE: not a whole number"},
      {"52-54-00-00-00-01 7 9 " + std::string(64, 'A') + " " + hmac, "SHA256: not 64 lower-case hex digits"},
      {"52-54-00-00-00-01 7 9 " + sha + " " + hmac + "0", "HMAC: not 64 lower-case hex digits"},
  };
  for (const auto& [text, why] : bad) {
    auto refused = parse_checkin_header(text);
    ASSERT_FALSE(refused.ok()) << text;
    EXPECT_TRUE(mentions(refused.error(), why)) << refused.error().message;
  }
}

TEST(CheckinName, MachineAndUtcTime) {
  const auto time = std::chrono::system_clock::from_time_t(1796549220);  // 2026-12-06T09:27:00Z
  EXPECT_EQ(checkin_entry_name("52-54-00-00-00-01", time), "52-54-00-00-00-01-20261206T092700Z");
}

// A VHDX in memory: a base, or a child of `parent`.
std::unique_ptr<Layer> make_layer(const std::optional<Guid>& parent, uint64_t size = 16 * MiB) {
  ImageSpec spec;
  spec.format = ImageFormat::Vhdx;
  spec.type = parent ? ImageType::Differencing : ImageType::Dynamic;
  spec.virtual_size = size;
  spec.block_size = 2 * MiB;
  if (parent) spec.parent = ParentRecord{*parent, "base.vhdx", "/teacher/base.vhdx", 0};
  MemorySink sink("image");
  auto completed = complete_spec(spec);
  EXPECT_TRUE(completed.ok());
  auto writer = create_image(*completed, sink);
  EXPECT_TRUE(writer.ok());
  EXPECT_TRUE((*writer)->finish().ok());
  Diagnostics diagnostics;
  OpenOptions options;
  options.diagnostics = &diagnostics;
  auto layer = open_layer(std::make_unique<MemorySource>("image", sink.bytes()), options);
  EXPECT_TRUE(layer.ok()) << (layer.ok() ? "" : layer.error().message);
  return std::move(*layer);
}

TEST(CheckinParent, OnlyAChildOfTheNewestVersion) {
  auto v1 = make_layer(std::nullopt);
  auto v2 = make_layer(v1->link_id());
  auto v3 = make_layer(v2->link_id());
  Manifest manifest;
  manifest.disk_size = 16 * MiB;
  manifest.versions = {ManifestVersion{}, ManifestVersion{}, ManifestVersion{}};
  const std::pair<const char*, const Layer*> names[] = {{"v1", v1.get()}, {"v2", v2.get()}, {"v3", v3.get()}};
  for (size_t i = 0; i < 3; i++) {
    manifest.versions[i].name = names[i].first;
    manifest.versions[i].image_id = names[i].second->format_id(names[i].second->link_id());
  }
  auto teacher = make_layer(v3->link_id());
  EXPECT_TRUE(check_child_of_newest(*teacher, manifest, "teacher.avhdx").ok());

  auto late = make_layer(v2->link_id());  // a teacher who missed v3
  auto older = check_child_of_newest(*late, manifest, "late.avhdx");
  ASSERT_FALSE(older.ok());
  EXPECT_TRUE(mentions(older.error(), "late.avhdx: parent_linkage: its parent id")) << older.error().message;
  EXPECT_TRUE(mentions(older.error(), "is not the id of the newest published version v3"));
  EXPECT_TRUE(mentions(older.error(), "it is a child of v2, an older version"));

  auto base = check_child_of_newest(*v1, manifest, "base.vhdx");
  ASSERT_FALSE(base.ok());
  EXPECT_TRUE(mentions(base.error(), "not a differencing image")) << base.error().message;

  auto stranger = check_child_of_newest(*make_layer(make_layer(std::nullopt)->link_id()), manifest, "x.avhdx");
  ASSERT_FALSE(stranger.ok());
  EXPECT_FALSE(mentions(stranger.error(), "an older version"));

  auto bigger = make_layer(v3->link_id(), 32 * MiB);
  auto size = check_child_of_newest(*bigger, manifest, "big.avhdx");
  ASSERT_FALSE(size.ok());
  EXPECT_TRUE(mentions(size.error(), "virtual size 33554432 bytes, the lab's disks are 16777216 bytes"));
}

}  // namespace
}  // namespace troy::cli::checkin_test
