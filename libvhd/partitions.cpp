#include "partitions.h"

#include <cstring>
#include <vector>

#include <fmt/format.h>

#include "integers.h"

namespace troy {
namespace {

#pragma pack(push, 1)
struct MbrEntry {
  uint8_t status;
  uint8_t chs_first[3];
  uint8_t type;
  uint8_t chs_last[3];
  ul32 first_lba;
  ul32 sectors;
};
struct Mbr {
  uint8_t boot_code[446];
  MbrEntry entries[4];
  uint8_t signature[2];
};
struct GptHeader {
  char signature[8];  // "EFI PART"
  ul32 revision;
  ul32 header_size;
  ul32 header_crc;
  ul32 reserved;
  ul64 current_lba;
  ul64 backup_lba;
  ul64 first_usable_lba;
  ul64 last_usable_lba;
  uint8_t disk_guid[16];
  ul64 entries_lba;
  ul32 entry_count;
  ul32 entry_size;
  ul32 entries_crc;
};
struct GptEntry {
  uint8_t type_guid[16];
  uint8_t unique_guid[16];
  ul64 first_lba;
  ul64 last_lba;  // inclusive
};
#pragma pack(pop)
static_assert(sizeof(Mbr) == 512 && sizeof(GptHeader) == 92 && sizeof(GptEntry) == 48);

constexpr uint8_t kGptProtective = 0xee;
constexpr uint32_t kMaxGptEntries = 1024;
constexpr int kMaxLogicalPartitions = 128;

bool is_extended(uint8_t type) { return type == 0x05 || type == 0x0f || type == 0x85; }

template <typename T>
Result<T> read_at(const DiskReader& read, uint64_t offset) {
  T value;
  TROY_TRY(read(offset, std::as_writable_bytes(std::span(&value, 1))));
  return value;
}

// Adds a partition after checking it lies inside the disk.
Result<void> add(PartitionTable& table, unsigned number, uint64_t first_sector, uint64_t sectors, uint32_t sector_size,
                 uint64_t disk_size) {
  const uint64_t offset = first_sector * sector_size;
  const uint64_t length = sectors * sector_size;
  if (offset > disk_size || length > disk_size - offset)
    return Error{fmt::format("{} partition {}: sectors {} to {} lie outside the disk of {} bytes", table.scheme, number,
                             first_sector, first_sector + sectors, disk_size)};
  table.partitions.push_back({number, offset, length});
  return success();
}

Result<void> read_gpt(const DiskReader& read, uint64_t disk_size, uint32_t sector_size, PartitionTable& table) {
  TROY_ASSIGN(header, read_at<GptHeader>(read, sector_size));
  if (std::memcmp(header.signature, "EFI PART", 8) != 0)
    return Error{"gpt: the protective MBR is there but no GPT header at LBA 1"};
  if (header.entry_size < sizeof(GptEntry) || header.entry_size > 4096 || header.entry_count > kMaxGptEntries)
    return Error{fmt::format("gpt: {} entries of {} bytes: not a table troy reads", uint32_t{header.entry_count},
                             uint32_t{header.entry_size})};
  std::vector<std::byte> entries(static_cast<size_t>(header.entry_count) * header.entry_size);
  const uint64_t at = header.entries_lba * sector_size;
  if (at > disk_size || entries.size() > disk_size - at) return Error{"gpt: the partition entries lie outside the disk"};
  TROY_TRY(read(at, entries));
  for (uint32_t i = 0; i < header.entry_count; i++) {
    GptEntry entry;
    std::memcpy(&entry, entries.data() + static_cast<size_t>(i) * header.entry_size, sizeof(entry));
    static constexpr uint8_t kUnused[16] = {};
    if (std::memcmp(entry.type_guid, kUnused, 16) == 0) continue;
    if (entry.last_lba < entry.first_lba) return Error{fmt::format("gpt partition {}: ends before it starts", i + 1)};
    TROY_TRY(add(table, i + 1, entry.first_lba, entry.last_lba - entry.first_lba + 1, sector_size, disk_size));
  }
  return success();
}

// Logical partitions: a chain of extended boot records inside the extended
// partition. Each holds one logical partition (relative to itself) and the
// next record (relative to the extended partition's start).
Result<void> read_logical(const DiskReader& read, uint64_t disk_size, uint32_t sector_size, uint64_t extended_start,
                          PartitionTable& table) {
  uint64_t record = extended_start;
  for (unsigned number = 5; number < 5 + kMaxLogicalPartitions; number++) {
    if (record * sector_size > disk_size - sizeof(Mbr)) return Error{"mbr: an extended boot record lies outside the disk"};
    TROY_ASSIGN(ebr, read_at<Mbr>(read, record * sector_size));
    if (ebr.signature[0] != 0x55 || ebr.signature[1] != 0xaa) return success();
    const MbrEntry& logical = ebr.entries[0];
    if (logical.type != 0 && logical.sectors != 0)
      TROY_TRY(add(table, number, record + logical.first_lba, logical.sectors, sector_size, disk_size));
    const MbrEntry& next = ebr.entries[1];
    if (!is_extended(next.type) || next.first_lba == 0) return success();
    record = extended_start + next.first_lba;
  }
  return Error{fmt::format("mbr: more than {} logical partitions (a loop?)", kMaxLogicalPartitions)};
}

}  // namespace

Result<PartitionTable> read_partition_table(const DiskReader& read, uint64_t disk_size, uint32_t sector_size) {
  PartitionTable table{"none", {}};
  if (disk_size < 2 * static_cast<uint64_t>(sector_size)) return table;
  TROY_ASSIGN(mbr, read_at<Mbr>(read, 0));
  if (mbr.signature[0] != 0x55 || mbr.signature[1] != 0xaa) return table;
  for (const MbrEntry& entry : mbr.entries)
    if (entry.type == kGptProtective) {
      table.scheme = "gpt";
      TROY_TRY(read_gpt(read, disk_size, sector_size, table));
      return table;
    }
  table.scheme = "mbr";
  for (unsigned i = 0; i < 4; i++) {
    const MbrEntry& entry = mbr.entries[i];
    if (entry.type == 0 || entry.sectors == 0) continue;
    TROY_TRY(add(table, i + 1, entry.first_lba, entry.sectors, sector_size, disk_size));
    if (is_extended(entry.type)) TROY_TRY(read_logical(read, disk_size, sector_size, entry.first_lba, table));
  }
  return table;
}

}  // namespace troy
