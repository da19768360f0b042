// Partition tables as `troy apply --keep-partition` reads them: MBR primary
// and logical partitions, GPT, and tables that point outside the disk.
#include "partitions.h"

#include <cstring>

#include <fmt/format.h>
#include <gtest/gtest.h>

namespace troy {
namespace {

struct Disk {
  explicit Disk(uint64_t size) : bytes(size) {}
  void put32(uint64_t at, uint32_t value) {
    for (int i = 0; i < 4; i++) bytes[at + i] = std::byte(value >> (8 * i));
  }
  void put64(uint64_t at, uint64_t value) {
    put32(at, static_cast<uint32_t>(value));
    put32(at + 4, static_cast<uint32_t>(value >> 32));
  }
  // An MBR-style record at `at`: entry i of type `type` from sector `first`.
  void entry(uint64_t at, int i, uint8_t type, uint32_t first, uint32_t sectors) {
    const uint64_t e = at + 446 + 16 * i;
    bytes[e + 4] = std::byte(type);
    put32(e + 8, first);
    put32(e + 12, sectors);
    bytes[at + 510] = std::byte{0x55};
    bytes[at + 511] = std::byte{0xaa};
  }
  DiskReader reader() const {
    return [this](uint64_t offset, std::span<std::byte> out) -> Result<void> {
      if (offset + out.size() > bytes.size()) return Error{"past the end"};
      std::memcpy(out.data(), bytes.data() + offset, out.size());
      return success();
    };
  }
  std::vector<std::byte> bytes;
};

std::string describe(const PartitionTable& table) {
  std::string text = table.scheme + ":";
  for (const Partition& p : table.partitions)
    text += fmt::format(" {}@{}+{}", p.number, p.offset / 512, p.length / 512);
  return text;
}

TEST(Partitions, NoSignatureMeansNoTable) {
  Disk disk(1 << 20);
  EXPECT_EQ(describe(*read_partition_table(disk.reader(), disk.bytes.size(), 512)), "none:");
}

TEST(Partitions, MbrPrimaryAndLogicalPartitionsAreNumberedAsLinuxDoes) {
  Disk disk(4 << 20);
  disk.entry(0, 0, 0x07, 2048, 2048);  // sda1
  disk.entry(0, 1, 0x0f, 4096, 4096);  // sda2: extended
  disk.entry(4096 * 512, 0, 0x07, 63, 1000);    // sda5, relative to its record
  disk.entry(4096 * 512, 1, 0x05, 2048, 2048);  // next record, relative to the extended partition
  disk.entry(6144 * 512, 0, 0x83, 63, 500);     // sda6
  EXPECT_EQ(describe(*read_partition_table(disk.reader(), disk.bytes.size(), 512)),
            "mbr: 1@2048+2048 2@4096+4096 5@4159+1000 6@6207+500");
}

TEST(Partitions, GptEntriesAreNumberedByTheirIndex) {
  Disk disk(4 << 20);
  disk.entry(0, 0, 0xee, 1, 8191);
  std::memcpy(disk.bytes.data() + 512, "EFI PART", 8);
  disk.put64(512 + 72, 2);    // entries at LBA 2
  disk.put32(512 + 80, 128);  // entries
  disk.put32(512 + 84, 128);  // bytes each
  const auto gpt_entry = [&](int index, uint64_t first, uint64_t last) {
    const uint64_t at = 1024 + 128 * index;
    disk.bytes[at] = std::byte{0xaf};  // any non-zero type GUID
    disk.put64(at + 32, first);
    disk.put64(at + 40, last);
  };
  gpt_entry(0, 2048, 4095);
  gpt_entry(2, 4096, 8000);
  EXPECT_EQ(describe(*read_partition_table(disk.reader(), disk.bytes.size(), 512)), "gpt: 1@2048+2048 3@4096+3905");
}

TEST(Partitions, APartitionOutsideTheDiskIsAnError) {
  Disk disk(1 << 20);
  disk.entry(0, 0, 0x07, 2048, 4096);
  const auto table = read_partition_table(disk.reader(), disk.bytes.size(), 512);
  ASSERT_FALSE(table.ok());
  EXPECT_NE(table.error().message.find("mbr partition 1"), std::string::npos);
}

}  // namespace
}  // namespace troy
