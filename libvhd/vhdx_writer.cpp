// Writing new VHDX images: fixed, dynamic and differencing (.avhdx). The
// layout follows qemu and Hyper-V: header section, a 1 MiB log (empty), the
// metadata region, the BAT, then payload blocks in the order they are first
// written, and sector bitmap blocks last. See docs/formats.md, "Writing VHDX".
#include <algorithm>
#include <cstring>
#include <map>
#include <vector>

#include <fmt/format.h>

#include "crc32c.h"
#include "layout.h"
#include "random.h"
#include "text.h"
#include "vhdx.h"
#include "vhdx_format.h"
#include "writer.h"

namespace troy::vhdx {
namespace {

using writer_detail::check_range;

constexpr uint64_t kLogOffset = 1 * MiB;
constexpr uint64_t kLogLength = 1 * MiB;
constexpr uint64_t kMetadataOffset = 2 * MiB;
constexpr uint64_t kMetadataLength = 1 * MiB;
constexpr uint64_t kBatOffset = 3 * MiB;
constexpr uint64_t kItemsStart = kMetadataTableBytes;  // items follow the 64 KiB table

// A metadata item as written: where in the region, its flags and bytes.
struct Item {
  Guid id;
  uint32_t flags;
  std::vector<std::byte> bytes;
};

template <typename T>
std::vector<std::byte> item_bytes(const T& value) {
  const auto bytes = bytes_of(value);
  return {bytes.begin(), bytes.end()};
}

class VhdxWriter final : public ImageWriter {
 public:
  VhdxWriter(const ImageSpec& spec, Sink& sink) : spec_(spec), sink_(sink) {
    blocks_ = ceil_div(spec.virtual_size, spec.block_size);
    chunk_ratio_ = kSectorsPerChunk * spec.logical_sector_size / spec.block_size;
    sectors_per_block_ = spec.block_size / spec.logical_sector_size;
    const uint64_t entries = bat_entry_count(blocks_, chunk_ratio_, differencing());
    bat_.assign(entries, kNotPresent);
    bat_length_ = round_up(entries * 8, MiB);
    next_free_ = kBatOffset + bat_length_;
    if (differencing()) chunk_bitmaps_.resize(ceil_div(blocks_, chunk_ratio_));
  }

  Result<void> start();
  uint64_t block_size() const override { return spec_.block_size; }
  Result<void> write(uint64_t offset, std::span<const std::byte> data) override;
  Result<void> write_zeros(uint64_t offset, uint64_t length) override;
  Result<void> finish() override;

 private:
  bool differencing() const { return spec_.type == ImageType::Differencing; }
  uint64_t payload_index(uint64_t block) const { return vhdx::payload_index(block, chunk_ratio_); }
  uint64_t bitmap_index(uint64_t chunk) const { return vhdx::bitmap_index(chunk, chunk_ratio_); }
  uint64_t& entry(uint64_t block) { return bat_[payload_index(block)]; }
  // Sectors of the block inside the virtual disk (the last block may be short).
  uint64_t sectors_in(uint64_t block) const {
    return std::min(spec_.block_size, spec_.virtual_size - block * spec_.block_size) / spec_.logical_sector_size;
  }

  Result<uint64_t> block_offset(uint64_t block);
  void mark_sectors(uint64_t block, uint64_t first, uint64_t count);
  uint64_t count_marked(uint64_t block) const;
  Result<void> settle_differencing_states();
  Result<void> write_metadata();
  Result<void> write_header_section();

  ImageSpec spec_;
  Sink& sink_;
  uint64_t blocks_ = 0;
  uint64_t chunk_ratio_ = 0;
  uint64_t sectors_per_block_ = 0;
  std::vector<uint64_t> bat_;
  uint64_t bat_length_ = 0;
  uint64_t next_free_ = 0;  // 1 MiB aligned
  // Differencing: which sectors each chunk's blocks hold, LSB first, kept in
  // memory until finish() (1 MiB per chunk touched).
  std::vector<std::vector<uint8_t>> chunk_bitmaps_;
  Guid data_write_guid_{};
  Guid file_write_guid_{};
  Guid virtual_disk_id_{};
};

Result<void> VhdxWriter::start() {
  TROY_ASSIGN(data_write, random_guid());
  TROY_ASSIGN(file_write, random_guid());
  TROY_ASSIGN(disk_id, random_guid());
  data_write_guid_ = data_write;
  file_write_guid_ = file_write;
  virtual_disk_id_ = disk_id;
  if (spec_.type != ImageType::Fixed) return success();
  // A fixed image holds every block, in order, from the start.
  for (uint64_t block = 0; block < blocks_; block++) {
    entry(block) = make_entry(kFullyPresent, next_free_);
    next_free_ += spec_.block_size;
  }
  return sink_.set_size(next_free_);
}

// The file offset of the block's data, allocating it at the end of the file
// on first use. A differencing block that was ZERO holds zeros everywhere
// once allocated: its fresh space reads zeros, so all its sectors count.
Result<uint64_t> VhdxWriter::block_offset(uint64_t block) {
  uint64_t& e = entry(block);
  const uint64_t state = state_of(e);
  if (state == kFullyPresent || state == kPartiallyPresent) return offset_of(e);
  e = make_entry(differencing() ? kPartiallyPresent : kFullyPresent, next_free_);
  next_free_ += spec_.block_size;
  if (state == kZero) mark_sectors(block, 0, sectors_in(block));
  return offset_of(e);
}

void VhdxWriter::mark_sectors(uint64_t block, uint64_t first, uint64_t count) {
  if (!differencing()) return;
  std::vector<uint8_t>& bitmap = chunk_bitmaps_[block / chunk_ratio_];
  if (bitmap.empty()) bitmap.assign(kSectorBitmapBlockSize, 0);
  const uint64_t base = (block % chunk_ratio_) * sectors_per_block_;
  for (uint64_t s = base + first; s < base + first + count; s++) bitmap[s / 8] |= static_cast<uint8_t>(1u << (s % 8));
}

uint64_t VhdxWriter::count_marked(uint64_t block) const {
  const std::vector<uint8_t>& bitmap = chunk_bitmaps_[block / chunk_ratio_];
  if (bitmap.empty()) return 0;
  const uint64_t base = (block % chunk_ratio_) * sectors_per_block_;
  uint64_t marked = 0;
  for (uint64_t s = base; s < base + sectors_in(block); s++) marked += (bitmap[s / 8] >> (s % 8)) & 1;
  return marked;
}

Result<void> VhdxWriter::write(uint64_t offset, std::span<const std::byte> data) {
  TROY_TRY(check_range(sink_.name(), spec_.virtual_size, spec_.logical_sector_size, offset, data.size()));
  while (!data.empty()) {
    const uint64_t block = offset / spec_.block_size;
    const uint64_t within = offset % spec_.block_size;
    const size_t count = std::min<uint64_t>(data.size(), spec_.block_size - within);
    TROY_ASSIGN(at, block_offset(block));
    TROY_TRY(sink_.write_at(at + within, data.first(count)));
    sink_.start_writeback(at + within, count);
    mark_sectors(block, within / spec_.logical_sector_size, count / spec_.logical_sector_size);
    offset += count;
    data = data.subspan(count);
  }
  return success();
}

Result<void> VhdxWriter::write_zeros(uint64_t offset, uint64_t length) {
  TROY_TRY(check_range(sink_.name(), spec_.virtual_size, spec_.logical_sector_size, offset, length));
  const std::vector<std::byte> zeros(std::min<uint64_t>(length, spec_.block_size));
  while (length > 0) {
    const uint64_t block = offset / spec_.block_size;
    const uint64_t within = offset % spec_.block_size;
    const uint64_t count = std::min(length, spec_.block_size - within);
    const uint64_t state = state_of(entry(block));
    const bool allocated = state == kFullyPresent || state == kPartiallyPresent;
    const bool whole_block = within == 0 && count / spec_.logical_sector_size == sectors_in(block);
    if (differencing() && whole_block && !allocated) entry(block) = kZero;
    else if (differencing() || allocated) TROY_TRY(write(offset, std::span(zeros).first(count)));
    offset += count;
    length -= count;
  }
  return success();
}

// A differencing block whose every sector was written becomes FULLY_PRESENT.
// Every chunk gets a sector bitmap block, written only where bits are set (a
// hole otherwise, so it takes no space): the spec lets a chunk without
// PARTIALLY_PRESENT blocks go without one, but libvhdi 20210425 then reads
// the chunk's bitmap from file offset 0 and misreads the child.
Result<void> VhdxWriter::settle_differencing_states() {
  for (uint64_t chunk = 0; chunk < chunk_bitmaps_.size(); chunk++) {
    const uint64_t last = std::min(blocks_, (chunk + 1) * chunk_ratio_);
    for (uint64_t block = chunk * chunk_ratio_; block < last; block++) {
      uint64_t& e = entry(block);
      if (state_of(e) == kPartiallyPresent && count_marked(block) == sectors_in(block))
        e = make_entry(kFullyPresent, offset_of(e));
    }
    bat_[bitmap_index(chunk)] = make_entry(kBitmapPresent, next_free_);
    if (!chunk_bitmaps_[chunk].empty())
      TROY_TRY(sink_.write_at(next_free_, std::as_bytes(std::span(chunk_bitmaps_[chunk]))));
    next_free_ += kSectorBitmapBlockSize;
  }
  return success();
}

Result<void> VhdxWriter::write_metadata() {
  FileParameters parameters{};
  parameters.block_size = static_cast<uint32_t>(spec_.block_size);
  parameters.flags = (spec_.type == ImageType::Fixed ? uint32_t{kLeaveBlockAllocated} : 0u) |
                     (differencing() ? uint32_t{kHasParent} : 0u);
  std::vector<Item> items = {
      {kFileParametersItem, kIsRequired, item_bytes(parameters)},
      {kVirtualDiskSizeItem, kIsRequired | kIsVirtualDisk, item_bytes(ul64{spec_.virtual_size})},
      {kVirtualDiskIdItem, kIsRequired | kIsVirtualDisk, item_bytes(virtual_disk_id_)},
      {kLogicalSectorSizeItem, kIsRequired | kIsVirtualDisk, item_bytes(ul32{spec_.logical_sector_size})},
      {kPhysicalSectorSizeItem, kIsRequired | kIsVirtualDisk, item_bytes(ul32{spec_.physical_sector_size})},
  };
  if (differencing()) items.push_back({kParentLocatorItem, kIsRequired, parent_locator_item(*spec_.parent)});
  std::vector<std::byte> region(kMetadataLength);
  MetadataTableHeader header{};
  std::memcpy(header.signature, "metadata", 8);
  header.entry_count = static_cast<uint16_t>(items.size());
  std::memcpy(region.data(), &header, sizeof header);
  uint64_t at = kItemsStart;
  for (size_t i = 0; i < items.size(); i++) {
    MetadataTableEntry entry{};
    entry.item_id = items[i].id;
    entry.offset = static_cast<uint32_t>(at);
    entry.length = static_cast<uint32_t>(items[i].bytes.size());
    entry.flags = items[i].flags;
    std::memcpy(region.data() + sizeof header + i * sizeof entry, &entry, sizeof entry);
    std::memcpy(region.data() + at, items[i].bytes.data(), items[i].bytes.size());
    at = round_up(at + items[i].bytes.size(), 8);
  }
  return sink_.write_at(kMetadataOffset, region);
}

// File type identifier, both headers (sequence 0 and 1, so the second is
// current) and both region tables.
Result<void> VhdxWriter::write_header_section() {
  FileIdentifier identifier{};
  std::memcpy(identifier.signature, "vhdxfile", 8);
  const std::vector<std::byte> creator = utf8_to_utf16("troy 0.1.0", false);
  std::memcpy(identifier.creator, creator.data(), creator.size());
  TROY_TRY(sink_.write_at(0, bytes_of(identifier)));
  for (int slot = 0; slot < 2; slot++) {
    Header header{};
    header.signature = kHeaderSignature;
    header.sequence_number = static_cast<uint64_t>(slot);
    header.file_write_guid = file_write_guid_;
    header.data_write_guid = data_write_guid_;
    header.version = 1;
    header.log_length = static_cast<uint32_t>(kLogLength);
    header.log_offset = kLogOffset;
    header.checksum = crc32c(bytes_of(header));
    TROY_TRY(sink_.write_at(kHeaderOffsets[slot], bytes_of(header)));
  }
  std::vector<std::byte> table(kRegionTableBytes);
  RegionTableHeader header{};
  header.signature = kRegionSignature;
  header.entry_count = 2;
  const RegionTableEntry entries[2] = {
      {kBatRegion, kBatOffset, static_cast<uint32_t>(bat_length_), 1},
      {kMetadataRegion, kMetadataOffset, static_cast<uint32_t>(kMetadataLength), 1},
  };
  std::memcpy(table.data(), &header, sizeof header);
  std::memcpy(table.data() + sizeof header, entries, sizeof entries);
  const uint32_t checksum = crc32c(table);
  std::memcpy(table.data() + 4, bytes_of(ul32{checksum}).data(), 4);  // the checksum field
  for (const uint64_t offset : kRegionTableOffsets) TROY_TRY(sink_.write_at(offset, table));
  return success();
}

Result<void> VhdxWriter::finish() {
  if (differencing()) TROY_TRY(settle_differencing_states());
  std::vector<ul64> table(bat_length_ / 8);
  std::copy(bat_.begin(), bat_.end(), table.begin());
  TROY_TRY(sink_.write_at(kBatOffset, std::as_bytes(std::span(table))));
  TROY_TRY(write_metadata());
  TROY_TRY(write_header_section());
  return sink_.set_size(next_free_);
}

}  // namespace

// The parent locator item: header, key/value entries, then UTF-16LE strings.
std::vector<std::byte> parent_locator_item(const ParentRecord& parent) {
  const std::vector<std::pair<std::string, std::string>> pairs = {
      {"parent_linkage", fmt::format("{{{}}}", guid_to_text(parent.link_id))},
      {"relative_path", writer_detail::windows_relative_path(parent.relative_path)},
      {"absolute_win32_path", writer_detail::windows_path(parent.absolute_path)},
  };
  ParentLocatorHeader header{};
  header.locator_type = kVhdxParentLocatorType;
  header.key_value_count = static_cast<uint16_t>(pairs.size());
  std::vector<std::byte> out = item_bytes(header);
  std::vector<std::byte> strings;
  const uint64_t strings_start = sizeof header + pairs.size() * sizeof(ParentLocatorKeyValue);
  for (const auto& [key, value] : pairs) {
    const std::vector<std::byte> key16 = utf8_to_utf16(key, false);
    const std::vector<std::byte> value16 = utf8_to_utf16(value, false);
    ParentLocatorKeyValue entry{};
    entry.key_offset = static_cast<uint32_t>(strings_start + strings.size());
    entry.key_length = static_cast<uint16_t>(key16.size());
    strings.insert(strings.end(), key16.begin(), key16.end());
    entry.value_offset = static_cast<uint32_t>(strings_start + strings.size());
    entry.value_length = static_cast<uint16_t>(value16.size());
    strings.insert(strings.end(), value16.begin(), value16.end());
    const auto entry_bytes = bytes_of(entry);
    out.insert(out.end(), entry_bytes.begin(), entry_bytes.end());
  }
  out.insert(out.end(), strings.begin(), strings.end());
  return out;
}

Result<std::unique_ptr<ImageWriter>> create_writer(const ImageSpec& spec, Sink& sink) {
  auto writer = std::make_unique<VhdxWriter>(spec, sink);
  TROY_TRY(writer->start());
  return std::unique_ptr<ImageWriter>(std::move(writer));
}

}  // namespace troy::vhdx
