// vhd::set_unique_id: a VHD base takes the id of the delta merged into it
// (native-VHD-boot labs, docs/vhdboot.md). Both footers carry the new id
// with valid checksums; a power loss at any write or flush leaves a file
// that opens with the old or the new id, and running again ends with the
// bytes of an uninterrupted run.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "image.h"
#include "power_loss_file.h"
#include "updater.h"
#include "writer.h"

namespace troy {
namespace {

constexpr uint64_t MiB = 1 << 20;

std::vector<std::byte> make_vhd(ImageType type) {
  ImageSpec spec;
  spec.format = ImageFormat::Vhd;
  spec.type = type;
  spec.virtual_size = 4 * MiB;
  spec.block_size = 2 * MiB;
  MemorySink sink("base.vhd");
  auto writer = create_image(spec, sink);
  EXPECT_TRUE(writer.ok());
  EXPECT_TRUE((*writer)->write(MiB, std::vector<std::byte>(4096, std::byte{0x5a})).ok());
  EXPECT_TRUE((*writer)->finish().ok());
  return sink.bytes();
}

// The image's id when it opens, and the problems `troy check` would report
// (a footer copy that differs from the end footer is one).
struct Opened {
  Guid id{};
  bool opens = false;
  size_t notes = 0;
};
Opened open_bytes(const std::vector<std::byte>& bytes) {
  Diagnostics diagnostics;
  diagnostics.collect_problems = true;
  OpenOptions options;
  options.diagnostics = &diagnostics;
  auto layer = open_layer(std::make_unique<MemorySource>("base.vhd", bytes), options);
  Opened opened;
  if (!layer) return opened;
  opened.opens = true;
  opened.id = (*layer)->link_id();
  opened.notes = diagnostics.problems.size();
  return opened;
}

Guid guid_of(uint8_t fill) {
  Guid id;
  id.fill(fill);
  return id;
}

TEST(VhdUniqueId, BothFootersTakeTheIdAndASecondRunWritesNothing) {
  const std::vector<std::byte> before = make_vhd(ImageType::Dynamic);
  PowerLossFile file(before, -1);
  ASSERT_TRUE(vhd::set_unique_id(file, guid_of(0x42)).ok());
  const std::vector<std::byte> after = file.bytes();
  const Opened opened = open_bytes(after);
  ASSERT_TRUE(opened.opens);
  EXPECT_EQ(opened.id, guid_of(0x42));
  EXPECT_EQ(opened.notes, 0u);
  EXPECT_EQ(std::memcmp(after.data(), after.data() + after.size() - 512, 512), 0);  // the copy equals the end footer
  EXPECT_EQ(after.size(), before.size());
  // Only the id and the checksum changed: the data reads the same.
  size_t changed = 0;
  for (size_t i = 0; i < after.size(); i++) changed += after[i] != before[i];
  EXPECT_LE(changed, 2u * (16 + 4));
  const uint64_t writes = file.writes();
  ASSERT_TRUE(vhd::set_unique_id(file, guid_of(0x42)).ok());
  EXPECT_EQ(file.writes(), writes);
}

TEST(VhdUniqueId, FixedImageHasOnlyTheEndFooter) {
  const std::vector<std::byte> before = make_vhd(ImageType::Fixed);
  PowerLossFile file(before, -1);
  ASSERT_TRUE(vhd::set_unique_id(file, guid_of(0x17)).ok());
  EXPECT_EQ(open_bytes(file.bytes()).id, guid_of(0x17));
  EXPECT_TRUE(std::equal(before.begin(), before.end() - 512, file.bytes().begin()));  // the disk's first sector untouched
}

TEST(VhdUniqueId, HalfMergedImageRefusedUnchanged) {
  std::vector<std::byte> bytes = make_vhd(ImageType::Dynamic);
  std::unique_ptr<RandomAccessFile> file = std::make_unique<PowerLossFile>(bytes, -1);
  PowerLossFile* raw = static_cast<PowerLossFile*>(file.get());
  auto updater = vhd::open_for_update(std::move(file));
  ASSERT_TRUE(updater.ok());
  ASSERT_TRUE((*updater)->set_merge_in_progress(true).ok());
  const std::vector<std::byte> marked = raw->bytes();
  PowerLossFile again(marked, -1);
  EXPECT_FALSE(vhd::set_unique_id(again, guid_of(0x42)).ok());
  EXPECT_EQ(again.bytes(), marked);
}

TEST(VhdUniqueId, PowerLossAtEveryWriteThenRerunGivesTheSameBytes) {
  const std::vector<std::byte> before = make_vhd(ImageType::Dynamic);
  const Guid old_id = open_bytes(before).id;
  PowerLossFile whole(before, -1);
  ASSERT_TRUE(vhd::set_unique_id(whole, guid_of(0x42)).ok());
  const std::vector<std::byte> expected = whole.bytes();
  std::mt19937 random(15);
  for (uint64_t loss_at = 1; loss_at <= whole.writes(); loss_at++) {
    for (int trial = 0; trial < 5; trial++) {
      PowerLossFile cut(before, static_cast<int64_t>(loss_at));
      ASSERT_FALSE(vhd::set_unique_id(cut, guid_of(0x42)).ok());
      const std::vector<std::byte> disk = cut.after_power_loss(trial, random);
      const Opened opened = open_bytes(disk);
      ASSERT_TRUE(opened.opens) << "loss at " << loss_at << ", trial " << trial;
      EXPECT_TRUE(opened.id == old_id || opened.id == guid_of(0x42));
      PowerLossFile rerun(disk, -1);
      ASSERT_TRUE(vhd::set_unique_id(rerun, guid_of(0x42)).ok());
      EXPECT_EQ(rerun.bytes(), expected) << "loss at " << loss_at << ", trial " << trial;
    }
  }
}

}  // namespace
}  // namespace troy
