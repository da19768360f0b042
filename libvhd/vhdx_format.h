// On-disk structures of the VHDX format ([MS-VHDX] v8.0). Every field is
// little-endian; GUIDs are kept as the 16 bytes stored in the file (Microsoft's
// mixed-endian layout). See docs/formats.md.
#pragma once

#include <cstdint>

#include "integers.h"
#include "layer.h"

namespace troy::vhdx {

constexpr uint64_t KiB = 1024;
constexpr uint64_t MiB = 1024 * KiB;

// The header section: file type identifier, two headers, two region tables.
constexpr uint64_t kHeaderOffsets[2] = {64 * KiB, 128 * KiB};
constexpr uint64_t kRegionTableOffsets[2] = {192 * KiB, 256 * KiB};
constexpr uint64_t kHeaderSectionSize = 1 * MiB;
constexpr uint64_t kHeaderBytes = 4 * KiB;        // checksummed length of a header
constexpr uint64_t kRegionTableBytes = 64 * KiB;  // checksummed length of a region table
constexpr uint64_t kMetadataTableBytes = 64 * KiB;
constexpr uint32_t kMaxTableEntries = 2047;       // region and metadata tables
constexpr uint64_t kLogSectorSize = 4 * KiB;
constexpr uint64_t kSectorBitmapBlockSize = 1 * MiB;
constexpr uint64_t kSectorsPerChunk = 1ull << 23;  // sectors covered by one sector bitmap block
constexpr uint64_t kMinBlockSize = 1 * MiB;
constexpr uint64_t kMaxBlockSize = 256 * MiB;
constexpr uint64_t kMaxVirtualSize = 64ull << 40;  // 64 TiB
constexpr uint64_t kMaxMetadataItemLength = 1 * MiB;

// GUIDs are written in text order ("2DC27766-F623-...") and stored in the
// file's mixed-endian order: the first three groups little-endian.

constexpr int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Text order to stored order: the first three groups are little-endian.
constexpr Guid to_stored_order(const Guid& text_order) {
  Guid stored = text_order;
  for (auto [from, to] : {std::pair{0, 3}, {4, 5}, {6, 7}})
    for (int i = 0; i <= (to - from) / 2; i++) {
      const uint8_t swap = stored[from + i];
      stored[from + i] = stored[to - i];
      stored[to - i] = swap;
    }
  return stored;
}

constexpr Guid guid(const char (&text)[37]) {
  Guid bytes{};
  int nibble = 0;
  for (int i = 0; i < 36; i++) {
    if (text[i] == '-') continue;
    bytes[nibble / 2] = static_cast<uint8_t>(bytes[nibble / 2] << 4 | hex_digit(text[i]));
    nibble++;
  }
  return to_stored_order(bytes);
}

constexpr Guid kBatRegion = guid("2DC27766-F623-4200-9D64-115E9BFD4A08");
constexpr Guid kMetadataRegion = guid("8B7CA206-4790-4B9A-B8FE-575F050F886E");
constexpr Guid kFileParametersItem = guid("CAA16737-FA36-4D43-B3B6-33F0AA44E76B");
constexpr Guid kVirtualDiskSizeItem = guid("2FA54224-CD1B-4876-B211-5DBED83BF4B8");
constexpr Guid kVirtualDiskIdItem = guid("BECA12AB-B2E6-4523-93EF-C309E000C746");
constexpr Guid kLogicalSectorSizeItem = guid("8141BF1D-A96F-4709-BA47-F233A8FAAB5F");
constexpr Guid kPhysicalSectorSizeItem = guid("CDA348C7-445D-4471-9CC9-E9885251C556");
constexpr Guid kParentLocatorItem = guid("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C");
// Troy's own: present, marked IsRequired, while a merge into the file is
// unfinished. [MS-VHDX] 2.6.1.2 obliges a reader that does not know a
// required item to refuse the file, so Hyper-V and qemu refuse a half-merged
// image instead of showing it (libvhdi ignores the flag).
constexpr Guid kTroyMergeInProgressItem = guid("7E0F5D3A-2B6C-4A8E-9D1F-54726F794D47");
constexpr Guid kVhdxParentLocatorType = guid("B04AEFB7-D19E-4A81-B789-25B8E9445913");

// Four-character signatures, as the little-endian u32 they are compared with.
constexpr uint32_t signature32(const char (&text)[5]) {
  return uint32_t(uint8_t(text[0])) | uint32_t(uint8_t(text[1])) << 8 | uint32_t(uint8_t(text[2])) << 16 |
         uint32_t(uint8_t(text[3])) << 24;
}
constexpr uint32_t kHeaderSignature = signature32("head");
constexpr uint32_t kRegionSignature = signature32("regi");
constexpr uint32_t kLogEntrySignature = signature32("loge");
constexpr uint32_t kDataDescriptorSignature = signature32("desc");
constexpr uint32_t kZeroDescriptorSignature = signature32("zero");
constexpr uint32_t kDataSectorSignature = signature32("data");

struct FileIdentifier {
  char signature[8];     // "vhdxfile"
  uint8_t creator[512];  // UTF-16LE, informational
};
static_assert(sizeof(FileIdentifier) == 520);

struct Header {
  ul32 signature;  // "head"
  ul32 checksum;   // CRC-32C over the 4 KiB header with this field zero
  ul64 sequence_number;
  Guid file_write_guid;
  Guid data_write_guid;  // children name this file by it (parent_linkage)
  Guid log_guid;         // zero: no log entries to replay
  ul16 log_version;      // 0
  ul16 version;          // 1
  ul32 log_length;       // multiple of 1 MiB
  ul64 log_offset;       // multiple of 1 MiB, at least 1 MiB
  uint8_t reserved[4016];
};
static_assert(sizeof(Header) == kHeaderBytes);

struct RegionTableHeader {
  ul32 signature;  // "regi"
  ul32 checksum;   // CRC-32C over the 64 KiB table with this field zero
  ul32 entry_count;
  ul32 reserved;
};
static_assert(sizeof(RegionTableHeader) == 16);

struct RegionTableEntry {
  Guid guid;
  ul64 file_offset;  // multiple of 1 MiB, at least 1 MiB
  ul32 length;       // multiple of 1 MiB
  ul32 required;     // bit 0: a reader that does not know this region must refuse the file
};
static_assert(sizeof(RegionTableEntry) == 32);

struct MetadataTableHeader {
  char signature[8];  // "metadata"
  ul16 reserved;
  ul16 entry_count;
  uint8_t reserved2[20];
};
static_assert(sizeof(MetadataTableHeader) == 32);

enum MetadataFlags : uint32_t { kIsUser = 1, kIsVirtualDisk = 2, kIsRequired = 4 };

struct MetadataTableEntry {
  Guid item_id;
  ul32 offset;  // from the start of the metadata region; at least 64 KiB
  ul32 length;  // at most 1 MiB
  ul32 flags;
  ul32 reserved;
};
static_assert(sizeof(MetadataTableEntry) == 32);

enum FileParameterFlags : uint32_t { kLeaveBlockAllocated = 1, kHasParent = 2 };

struct FileParameters {
  ul32 block_size;
  ul32 flags;
};
static_assert(sizeof(FileParameters) == 8);

struct ParentLocatorHeader {
  Guid locator_type;  // B04AEFB7-D19E-4A81-B789-25B8E9445913 for VHDX parents
  ul16 reserved;
  ul16 key_value_count;
};
static_assert(sizeof(ParentLocatorHeader) == 20);

struct ParentLocatorKeyValue {
  ul32 key_offset;    // from the start of the parent locator item
  ul32 value_offset;
  ul16 key_length;    // bytes of UTF-16LE, no terminator
  ul16 value_length;
};
static_assert(sizeof(ParentLocatorKeyValue) == 12);

// BAT entries: state in bits 0-2, file offset in MiB in bits 20-63.
enum PayloadState : uint8_t {
  kNotPresent = 0,
  kUndefined = 1,
  kZero = 2,
  kUnmapped = 3,
  kUnmappedV095 = 5,  // UNMAPPED as the 0.95 draft numbered it; qemu accepts it too
  kFullyPresent = 6,
  kPartiallyPresent = 7,
};
enum SectorBitmapState : uint8_t { kBitmapNotPresent = 0, kBitmapPresent = 6 };
constexpr uint64_t kBatStateMask = 7;
constexpr uint64_t kBatReservedMask = 0xFFFF8;  // bits 3-19
constexpr int kBatOffsetShift = 20;

// What a BAT entry holds, and where entries sit: CR payload entries, then the
// sector bitmap entry of their chunk ([MS-VHDX] 2.5).
constexpr uint64_t state_of(uint64_t entry) { return entry & kBatStateMask; }
constexpr uint64_t offset_of(uint64_t entry) { return (entry >> kBatOffsetShift) * MiB; }
constexpr uint64_t make_entry(uint64_t state, uint64_t offset) { return state | (offset / MiB) << kBatOffsetShift; }
constexpr uint64_t payload_index(uint64_t block, uint64_t chunk_ratio) { return block + block / chunk_ratio; }
constexpr uint64_t bitmap_index(uint64_t chunk, uint64_t chunk_ratio) { return chunk * (chunk_ratio + 1) + chunk_ratio; }
// How many BAT entries a disk of `blocks` payload blocks has ([MS-VHDX]
// 2.5): a differencing file has a bitmap entry for every chunk, including the
// last partial one; other files only between payload entries.
constexpr uint64_t bat_entry_count(uint64_t blocks, uint64_t chunk_ratio, bool differencing) {
  if (differencing) return (blocks + chunk_ratio - 1) / chunk_ratio * (chunk_ratio + 1);
  return blocks == 0 ? 0 : blocks + (blocks - 1) / chunk_ratio;
}

struct LogEntryHeader {
  ul32 signature;  // "loge"
  ul32 checksum;   // CRC-32C over the whole entry (entry_length bytes) with this field zero
  ul32 entry_length;
  ul32 tail;       // log offset of the oldest entry still needed
  ul64 sequence_number;
  ul32 descriptor_count;
  ul32 reserved;
  Guid log_guid;
  ul64 flushed_file_offset;  // the file was at least this long when the entry was written
  ul64 last_file_offset;     // the file must be extended to this length on replay
};
static_assert(sizeof(LogEntryHeader) == 64);

// A data descriptor ("desc") or a zero descriptor ("zero"); the second field
// is TrailingBytes or reserved, the third LeadingBytes or ZeroLength.
struct LogDescriptor {
  ul32 signature;
  ul32 trailing_bytes;
  ul64 leading_bytes_or_zero_length;
  ul64 file_offset;
  ul64 sequence_number;
};
static_assert(sizeof(LogDescriptor) == 32);

struct LogDataSector {
  ul32 signature;  // "data"
  ul32 sequence_high;
  uint8_t data[4084];
  ul32 sequence_low;
};
static_assert(sizeof(LogDataSector) == kLogSectorSize);

}  // namespace troy::vhdx
