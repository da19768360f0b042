// On-disk structures of the VHD format (Microsoft "Virtual Hard Disk Image
// Format Specification" 1.0). Every field is big-endian. See docs/formats.md.
#pragma once

#include <cstddef>
#include <cstdint>

#include "integers.h"

namespace troy::vhd {

constexpr uint64_t kSectorSize = 512;
constexpr uint64_t kFooterSize = 512;
constexpr uint64_t kMaxDiskSize = 2040ull << 30;  // the spec's limit, and qemu's
constexpr uint32_t kUnallocated = 0xFFFFFFFF;
constexpr uint64_t kNoDataOffset = ~0ull;  // Data Offset of a fixed disk

constexpr char kFooterCookie[8] = {'c', 'o', 'n', 'e', 'c', 't', 'i', 'x'};
constexpr char kHeaderCookie[8] = {'c', 'x', 's', 'p', 'a', 'r', 's', 'e'};
// Troy's dynamic header cookie while a merge into the file is unfinished:
// VHD has no flag that readers must honour, but every reader refuses a
// header whose cookie is not "cxsparse", so a half-merged image is refused
// rather than shown. Only troy merge accepts it, to finish the merge.
constexpr char kMergeInProgressCookie[8] = {'t', 'r', 'o', 'y', 'm', 'r', 'g', 'e'};
constexpr size_t kFooterChecksumOffset = 64;
constexpr size_t kHeaderChecksumOffset = 36;
constexpr uint32_t kVhdEpoch = 946684800;  // 2000-01-01 00:00:00 UTC in Unix time
constexpr uint32_t kVersion = 0x00010000;   // footer and dynamic header version 1.0
constexpr uint32_t kFeatureReserved = 2;     // "always set"

// VHD time stamps count seconds since 2000-01-01 UTC; earlier times are 0.
constexpr uint32_t vhd_timestamp(int64_t unix_time) {
  return unix_time <= kVhdEpoch ? 0 : static_cast<uint32_t>(unix_time - kVhdEpoch);
}

// Decodes a parent locator's Platform Data Space: the spec says sectors,
// Windows writes bytes. Values below 512 are sectors; multiples of 512 are bytes.
constexpr uint64_t locator_space_bytes(uint32_t data_space) {
  return data_space < 512 ? uint64_t{data_space} * kSectorSize : data_space;
}

// The sector bitmap before each block: one bit per sector, padded to whole
// sectors. Blocks under 4 KiB still get one whole sector of bitmap.
constexpr uint64_t bitmap_bytes_for(uint64_t block_size) {
  const uint64_t bits = block_size / kSectorSize;
  return (bits + 8 * kSectorSize - 1) / (8 * kSectorSize) * kSectorSize;
}

enum DiskType : uint32_t { kFixed = 2, kDynamic = 3, kDifferencing = 4 };

// Platform codes of parent locator entries.
enum PlatformCode : uint32_t {
  kNone = 0,
  kWi2r = 0x57693272,  // deprecated relative path
  kWi2k = 0x5769326B,  // deprecated absolute path
  kW2ru = 0x57327275,  // relative path, UTF-16LE
  kW2ku = 0x57326B75,  // absolute path, UTF-16LE
  kMac = 0x4D616320,   // Mac OS alias blob
  kMacX = 0x4D616358,  // file URL, UTF-8
};

struct Footer {
  char cookie[8];              // "conectix"
  ub32 features;               // bit 1 must be set; bit 0 = temporary
  ub32 file_format_version;    // 0x00010000
  ub64 data_offset;            // dynamic header offset; all ones for fixed disks
  ub32 timestamp;              // seconds since 2000-01-01 00:00:00 UTC
  char creator_app[4];
  ub32 creator_version;
  ub32 creator_host_os;        // "Wi2k" or "Mac "
  ub64 original_size;
  ub64 current_size;           // the virtual disk size
  ub16 cylinders;
  uint8_t heads;
  uint8_t sectors_per_track;
  ub32 disk_type;
  ub32 checksum;
  uint8_t unique_id[16];
  uint8_t saved_state;
  uint8_t reserved[427];
};
static_assert(sizeof(Footer) == 512);

struct ParentLocatorEntry {
  ub32 platform_code;
  ub32 platform_data_space;   // sectors per the spec; Windows writes bytes
  ub32 platform_data_length;  // bytes
  ub32 reserved;
  ub64 platform_data_offset;  // absolute file offset
};
static_assert(sizeof(ParentLocatorEntry) == 24);

struct DynamicHeader {
  char cookie[8];              // "cxsparse"
  ub64 data_offset;            // unused, all ones
  ub64 table_offset;           // BAT offset
  ub32 header_version;         // 0x00010000
  ub32 max_table_entries;
  ub32 block_size;             // bytes of data per block, sector bitmap excluded
  ub32 checksum;
  uint8_t parent_unique_id[16];
  ub32 parent_timestamp;
  ub32 reserved1;
  uint8_t parent_unicode_name[512];  // UTF-16BE
  ParentLocatorEntry parent_locators[8];
  uint8_t reserved2[256];
};
static_assert(sizeof(DynamicHeader) == 1024);

}  // namespace troy::vhd
