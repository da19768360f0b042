// The partition table a disk's content holds (MBR with its logical
// partitions, or GPT), numbered the way Linux numbers them (sda1, sda5, ...),
// so that `troy apply --keep-partition N` means the partition a lab admin
// sees as /dev/sdaN. Reads the disk through a callback: the image's resolved
// content, a target, or memory in tests.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "result.h"

namespace troy {

struct Partition {
  unsigned number = 0;  // 1-4 MBR primary, 5+ MBR logical, 1+ GPT entry index + 1
  uint64_t offset = 0;  // bytes
  uint64_t length = 0;  // bytes
};

struct PartitionTable {
  std::string scheme;  // "mbr", "gpt", or "none"
  std::vector<Partition> partitions;
};

using DiskReader = std::function<Result<void>(uint64_t offset, std::span<std::byte> out)>;

// Reads the table of a disk of `disk_size` bytes with `sector_size`-byte
// logical sectors. A disk without a valid MBR signature has scheme "none".
// Entries that point outside the disk are errors: keeping the wrong bytes
// would be worse than refusing.
Result<PartitionTable> read_partition_table(const DiskReader& read, uint64_t disk_size, uint32_t sector_size);

}  // namespace troy
