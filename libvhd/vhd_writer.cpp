// Writing new VHD images: fixed, dynamic and differencing, laid out the way
// Hyper-V lays them out (see docs/formats.md, "Writing VHD").
#include <algorithm>
#include <cstring>
#include <ctime>
#include <vector>

#include <fmt/format.h>

#include "layout.h"
#include "random.h"
#include "text.h"
#include "vhd.h"
#include "vhd_format.h"
#include "writer.h"

namespace troy::vhd {
namespace {

using writer_detail::check_range;

constexpr uint64_t kDataAlignment = 4096;  // block data starts on a 4 KiB boundary, as Hyper-V writes it

struct Geometry {
  uint16_t cylinders;
  uint8_t heads;
  uint8_t sectors_per_track;
};

// The CHS algorithm of the VHD specification's appendix. Readers that know
// Hyper-V's creator code use Current Size; the geometry only serves old BIOSes.
Geometry chs_geometry(uint64_t size) {
  uint64_t total = std::min<uint64_t>(size / kSectorSize, 65535ull * 16 * 255);
  uint64_t sectors_per_track = 0;
  uint64_t heads = 0;
  uint64_t cylinder_times_heads = 0;
  if (total >= 65535ull * 16 * 63) {
    sectors_per_track = 255;
    heads = 16;
    cylinder_times_heads = total / sectors_per_track;
  } else {
    sectors_per_track = 17;
    cylinder_times_heads = total / sectors_per_track;
    heads = std::max<uint64_t>((cylinder_times_heads + 1023) / 1024, 4);
    if (cylinder_times_heads >= heads * 1024 || heads > 16) {
      sectors_per_track = 31;
      heads = 16;
      cylinder_times_heads = total / sectors_per_track;
    }
    if (cylinder_times_heads >= heads * 1024) {
      sectors_per_track = 63;
      heads = 16;
      cylinder_times_heads = total / sectors_per_track;
    }
  }
  return {static_cast<uint16_t>(cylinder_times_heads / heads), static_cast<uint8_t>(heads),
          static_cast<uint8_t>(sectors_per_track)};
}

Footer make_footer(const ImageSpec& spec, const Guid& unique_id) {
  Footer footer{};
  std::memcpy(footer.cookie, kFooterCookie, sizeof footer.cookie);
  footer.features = kFeatureReserved;
  footer.file_format_version = kVersion;
  footer.data_offset = spec.type == ImageType::Fixed ? kNoDataOffset : kFooterSize;
  footer.timestamp = vhd_timestamp(std::time(nullptr));
  // Readers decide from the Creator Application whether the disk size is
  // Current Size (Hyper-V) or the CHS geometry's (Virtual PC): qemu uses
  // Current Size only for a few known creators. Troy follows Hyper-V's
  // semantics, so it says so with Hyper-V's code and version.
  std::memcpy(footer.creator_app, "win ", 4);
  footer.creator_version = 0x000a0000;
  footer.creator_host_os = 0x5769326B;  // "Wi2k"
  footer.original_size = spec.virtual_size;
  footer.current_size = spec.virtual_size;
  const Geometry geometry = chs_geometry(spec.virtual_size);
  footer.cylinders = geometry.cylinders;
  footer.heads = geometry.heads;
  footer.sectors_per_track = geometry.sectors_per_track;
  footer.disk_type = spec.type == ImageType::Fixed ? kFixed : spec.type == ImageType::Dynamic ? kDynamic : kDifferencing;
  std::memcpy(footer.unique_id, unique_id.data(), unique_id.size());
  footer.checksum = checksum(bytes_of(footer), kFooterChecksumOffset);
  return footer;
}

// A fixed VHD is the raw disk followed by the footer.
class FixedWriter final : public ImageWriter {
 public:
  FixedWriter(const ImageSpec& spec, Sink& sink, const Footer& footer) : spec_(spec), sink_(sink), footer_(footer) {}
  uint64_t block_size() const override { return spec_.block_size; }

  Result<void> write(uint64_t offset, std::span<const std::byte> data) override {
    TROY_TRY(check_range(sink_.name(), spec_.virtual_size, kSectorSize, offset, data.size()));
    TROY_TRY(sink_.write_at(offset, data));
    sink_.start_writeback(offset, data.size());
    return success();
  }

  Result<void> write_zeros(uint64_t offset, uint64_t length) override {
    TROY_TRY(check_range(sink_.name(), spec_.virtual_size, kSectorSize, offset, length));
    return write_zero_bytes(sink_, offset, length);
  }

  Result<void> finish() override {
    TROY_TRY(sink_.set_size(spec_.virtual_size + kFooterSize));
    return sink_.write_at(spec_.virtual_size, bytes_of(footer_));
  }

 private:
  ImageSpec spec_;
  Sink& sink_;
  Footer footer_;
};

struct LocatorData {
  uint32_t code;
  std::vector<std::byte> payload;  // UTF-16LE path
  uint64_t offset;
};

// Dynamic and differencing VHDs: footer copy, dynamic header, BAT, parent
// locators, then blocks (sector bitmap, then data on a 4 KiB boundary).
class SparseWriter final : public ImageWriter {
 public:
  SparseWriter(const ImageSpec& spec, Sink& sink, const Footer& footer)
      : spec_(spec), sink_(sink), footer_(footer), bitmap_bytes_(bitmap_bytes_for(spec.block_size)),
        bat_(ceil_div(spec.virtual_size, spec.block_size), kUnallocated), bitmaps_(bat_.size()) {
    bat_offset_ = kFooterSize + sizeof(DynamicHeader);
    next_free_ = bat_offset_ + round_up(bat_.size() * 4, kSectorSize);
    if (spec_.parent) place_locators();
  }

  uint64_t block_size() const override { return spec_.block_size; }
  Result<void> write(uint64_t offset, std::span<const std::byte> data) override;
  Result<void> write_zeros(uint64_t offset, uint64_t length) override;
  Result<void> finish() override;

 private:
  bool differencing() const { return spec_.parent.has_value(); }
  uint64_t data_offset(uint64_t block) const { return uint64_t{bat_[block]} * kSectorSize + bitmap_bytes_; }
  void place_locators();
  void allocate(uint64_t block);
  void mark_sectors(uint64_t block, uint64_t first, uint64_t count);
  Result<void> write_header();

  ImageSpec spec_;
  Sink& sink_;
  Footer footer_;
  uint64_t bitmap_bytes_;
  std::vector<uint32_t> bat_;                  // sector of each block's bitmap, or kUnallocated
  std::vector<std::vector<uint8_t>> bitmaps_;  // differencing: the sectors each block holds
  std::vector<LocatorData> locators_;
  uint64_t bat_offset_ = 0;
  uint64_t next_free_ = 0;  // where the next block may start
};

// Windows writes an absolute (W2ku) and a relative (W2ru) path, UTF-16LE,
// each in a 512-byte multiple whose size the Data Space field gives in bytes.
void SparseWriter::place_locators() {
  const ParentRecord& parent = *spec_.parent;
  locators_.push_back({kW2ku, utf8_to_utf16(writer_detail::windows_path(parent.absolute_path), false), 0});
  locators_.push_back({kW2ru, utf8_to_utf16(writer_detail::windows_relative_path(parent.relative_path), false), 0});
  for (LocatorData& locator : locators_) {
    locator.offset = next_free_;
    next_free_ += round_up(std::max<uint64_t>(locator.payload.size(), 1), kSectorSize);
  }
}

void SparseWriter::allocate(uint64_t block) {
  const uint64_t bitmap_at = round_up(next_free_ + bitmap_bytes_, kDataAlignment) - bitmap_bytes_;
  bat_[block] = static_cast<uint32_t>(bitmap_at / kSectorSize);
  next_free_ = bitmap_at + bitmap_bytes_ + spec_.block_size;
  if (differencing()) bitmaps_[block].assign(bitmap_bytes_, 0);
}

// VHD bitmaps are most significant bit first: sector 0 is 0x80 of byte 0.
void SparseWriter::mark_sectors(uint64_t block, uint64_t first, uint64_t count) {
  std::vector<uint8_t>& bitmap = bitmaps_[block];
  for (uint64_t s = first; s < first + count; s++) bitmap[s / 8] |= static_cast<uint8_t>(0x80 >> (s % 8));
}

Result<void> SparseWriter::write(uint64_t offset, std::span<const std::byte> data) {
  TROY_TRY(check_range(sink_.name(), spec_.virtual_size, kSectorSize, offset, data.size()));
  while (!data.empty()) {
    const uint64_t block = offset / spec_.block_size;
    const uint64_t within = offset % spec_.block_size;
    const size_t count = std::min<uint64_t>(data.size(), spec_.block_size - within);
    if (bat_[block] == kUnallocated) allocate(block);
    TROY_TRY(sink_.write_at(data_offset(block) + within, data.first(count)));
    sink_.start_writeback(data_offset(block) + within, count);
    if (differencing()) mark_sectors(block, within / kSectorSize, count / kSectorSize);
    offset += count;
    data = data.subspan(count);
  }
  return success();
}

// A differencing VHD has no zero state: zeros are stored as data. A dynamic
// one reads zeros where nothing is allocated.
Result<void> SparseWriter::write_zeros(uint64_t offset, uint64_t length) {
  TROY_TRY(check_range(sink_.name(), spec_.virtual_size, kSectorSize, offset, length));
  const std::vector<std::byte> zeros(std::min<uint64_t>(length, spec_.block_size));
  while (length > 0) {
    const uint64_t block = offset / spec_.block_size;
    const uint64_t count = std::min(length, spec_.block_size - offset % spec_.block_size);
    if (differencing() || bat_[block] != kUnallocated) TROY_TRY(write(offset, std::span(zeros).first(count)));
    offset += count;
    length -= count;
  }
  return success();
}

Result<void> SparseWriter::write_header() {
  DynamicHeader header{};
  std::memcpy(header.cookie, kHeaderCookie, sizeof header.cookie);
  header.data_offset = kNoDataOffset;
  header.table_offset = bat_offset_;
  header.header_version = kVersion;
  header.max_table_entries = static_cast<uint32_t>(bat_.size());
  header.block_size = static_cast<uint32_t>(spec_.block_size);
  if (spec_.parent) {
    const ParentRecord& parent = *spec_.parent;
    std::memcpy(header.parent_unique_id, parent.link_id.data(), parent.link_id.size());
    header.parent_timestamp = vhd_timestamp(parent.modified_unix);
    const std::string name = parent.relative_path.substr(parent.relative_path.find_last_of('/') + 1);
    const std::vector<std::byte> unicode_name = utf8_to_utf16(name, true);
    std::memcpy(header.parent_unicode_name, unicode_name.data(),
                std::min(unicode_name.size(), sizeof header.parent_unicode_name));
    for (size_t i = 0; i < locators_.size(); i++) {
      ParentLocatorEntry& entry = header.parent_locators[i];
      entry.platform_code = locators_[i].code;
      entry.platform_data_space = static_cast<uint32_t>(round_up(std::max<uint64_t>(locators_[i].payload.size(), 1), kSectorSize));
      entry.platform_data_length = static_cast<uint32_t>(locators_[i].payload.size());
      entry.platform_data_offset = locators_[i].offset;
      TROY_TRY(sink_.write_at(locators_[i].offset, locators_[i].payload));
    }
  }
  header.checksum = checksum(bytes_of(header), kHeaderChecksumOffset);
  return sink_.write_at(kFooterSize, bytes_of(header));
}

Result<void> SparseWriter::finish() {
  const std::vector<uint8_t> full_bitmap(bitmap_bytes_, 0xFF);  // dynamic blocks hold every sector
  std::vector<ub32> table(round_up(bat_.size() * 4, kSectorSize) / 4, ub32{kUnallocated});
  for (uint64_t block = 0; block < bat_.size(); block++) {
    table[block] = bat_[block];
    if (bat_[block] == kUnallocated) continue;
    const std::vector<uint8_t>& bitmap = differencing() ? bitmaps_[block] : full_bitmap;
    TROY_TRY(sink_.write_at(uint64_t{bat_[block]} * kSectorSize, std::as_bytes(std::span(bitmap))));
  }
  TROY_TRY(sink_.write_at(bat_offset_, std::as_bytes(std::span(table))));
  TROY_TRY(write_header());
  TROY_TRY(sink_.write_at(0, bytes_of(footer_)));
  TROY_TRY(sink_.set_size(next_free_ + kFooterSize));
  return sink_.write_at(next_free_, bytes_of(footer_));
}

}  // namespace

Result<std::unique_ptr<ImageWriter>> create_writer(const ImageSpec& spec, Sink& sink) {
  TROY_ASSIGN(unique_id, random_guid());
  const Footer footer = make_footer(spec, unique_id);
  if (spec.type == ImageType::Fixed) return std::unique_ptr<ImageWriter>(new FixedWriter(spec, sink, footer));
  return std::unique_ptr<ImageWriter>(new SparseWriter(spec, sink, footer));
}

}  // namespace troy::vhd
