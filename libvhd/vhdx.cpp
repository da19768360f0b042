#include "vhdx.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <map>

#include <fmt/format.h>

#include "crc32c.h"
#include "layout.h"
#include "random.h"
#include "text.h"
#include "vhdx_format.h"
#include "vhdx_log.h"

namespace troy::vhdx {
namespace {

struct KnownItem {
  Guid id;
  const char* name;
  uint32_t min_length;
};
constexpr KnownItem kKnownItems[] = {
    {kFileParametersItem, "File Parameters", sizeof(FileParameters)},
    {kVirtualDiskSizeItem, "Virtual Disk Size", 8},
    {kVirtualDiskIdItem, "Virtual Disk ID", 16},
    {kLogicalSectorSizeItem, "Logical Sector Size", 4},
    {kPhysicalSectorSizeItem, "Physical Sector Size", 4},
    {kParentLocatorItem, "Parent Locator", sizeof(ParentLocatorHeader)},
};

const KnownItem* known_item(const Guid& id) {
  for (const KnownItem& item : kKnownItems)
    if (item.id == id) return &item;
  return nullptr;
}

// ------------------------------------------------------------------ helpers

std::string state_name(uint64_t state) {
  switch (state) {
    case kNotPresent: return "NOT_PRESENT";
    case kUndefined: return "UNDEFINED";
    case kZero: return "ZERO";
    case kUnmapped: return "UNMAPPED";
    case kUnmappedV095: return "UNMAPPED (0.95 draft value 5)";
    case kFullyPresent: return "FULLY_PRESENT";
    case kPartiallyPresent: return "PARTIALLY_PRESENT";
    default: return fmt::format("reserved state {}", state);
  }
}

bool is_unmapped(uint64_t state) { return state == kUnmapped || state == kUnmappedV095; }
bool has_data(uint64_t state) { return state == kFullyPresent || state == kPartiallyPresent; }

// ------------------------------------------------------------------ headers

struct HeaderChoice {
  Header header{};
  int index = 0;            // 0 or 1: which copy is current
  std::string state;        // for `troy info`
};

struct HeaderCopy {
  Header header{};
  bool signature_ok = false;
  bool checksum_ok = false;
  bool version_ok = false;
  uint32_t computed = 0;
  bool valid() const { return signature_ok && checksum_ok && version_ok; }
};

Result<HeaderCopy> read_header(const Source& source, int index) {
  HeaderCopy copy;
  TROY_ASSIGN(header, read_struct<Header>(source, kHeaderOffsets[index]));
  copy.header = header;
  copy.signature_ok = header.signature == kHeaderSignature;
  copy.computed = crc32c_with_zeroed_field(bytes_of(header), 4);
  copy.checksum_ok = copy.computed == header.checksum;
  copy.version_ok = header.version == 1 && header.log_version == 0;
  return copy;
}

std::string header_fault(const HeaderCopy& copy) {
  if (!copy.signature_ok) return "signature is not 'head'";
  if (!copy.checksum_ok)
    return fmt::format("Checksum {:#010x} does not match the computed {:#010x}", uint32_t{copy.header.checksum},
                       copy.computed);
  return fmt::format("Version {} / LogVersion {}: only version 1 / log version 0 are known",
                     uint16_t{copy.header.version}, uint16_t{copy.header.log_version});
}

// The current header: of the valid ones, the higher SequenceNumber. Two
// valid headers with the same number must be identical (disk2vhd writes
// them so); anything else leaves no current header and the file is corrupt.
// --ignore-checksums only helps when neither header has a good checksum.
Result<HeaderChoice> choose_header(const Source& source, const OpenOptions& options) {
  Diagnostics& diagnostics = *options.diagnostics;
  TROY_ASSIGN(first, read_header(source, 0));
  TROY_ASSIGN(second, read_header(source, 1));
  const HeaderCopy* copies[2] = {&first, &second};
  bool usable[2] = {first.valid(), second.valid()};
  const bool ignoring = !usable[0] && !usable[1] && options.ignore_checksums;
  for (int i = 0; ignoring && i < 2; i++) usable[i] = copies[i]->signature_ok && copies[i]->version_ok;
  for (int i = 0; i < 2; i++)
    if (!copies[i]->valid())
      diagnostics.note(fmt::format("{}: header {} at {:#x}: {}{}", source.name(), i + 1, kHeaderOffsets[i],
                                   header_fault(*copies[i]),
                                   usable[i] ? " (ignored)" : usable[1 - i] ? "; using the other header" : ""));
  if (!usable[0] && !usable[1])
    return Error{fmt::format("{}: no valid header: header 1 {}, header 2 {}", source.name(), header_fault(first),
                             header_fault(second))};
  HeaderChoice choice;
  if (usable[0] && usable[1] && first.header.sequence_number == second.header.sequence_number) {
    if (std::memcmp(&first.header, &second.header, sizeof(Header)) != 0)
      return Error{fmt::format("{}: headers 1 and 2 both have SequenceNumber {} but differ: no current header",
                               source.name(), uint64_t{first.header.sequence_number})};
    choice.index = 0;
    choice.state = "headers 1 and 2 identical (as disk2vhd writes them)";
  } else {
    choice.index = !usable[0] || (usable[1] && second.header.sequence_number > first.header.sequence_number);
    choice.state = usable[1 - choice.index] ? fmt::format("header {} current, the other older", choice.index + 1)
                                            : fmt::format("header {} current, the other damaged", choice.index + 1);
  }
  choice.header = copies[choice.index]->header;
  return choice;
}

// ------------------------------------------------------------------ regions

struct Region {
  uint64_t offset = 0;
  uint64_t length = 0;
  bool found = false;
};

struct RegionTable {
  std::vector<RegionTableEntry> entries;
  std::string fault;  // why this copy cannot be used, empty when it can
};

Result<RegionTable> read_region_table(const Source& source, int index, const OpenOptions& options) {
  RegionTable table;
  std::vector<std::byte> bytes(kRegionTableBytes);
  TROY_TRY(source.read_at(kRegionTableOffsets[index], bytes));
  RegionTableHeader header;
  std::memcpy(&header, bytes.data(), sizeof header);
  const uint32_t computed = crc32c_with_zeroed_field(bytes, 4);
  if (header.signature != kRegionSignature) table.fault = "signature is not 'regi'";
  else if (header.entry_count > kMaxTableEntries)
    table.fault = fmt::format("EntryCount {} is more than {}", uint32_t{header.entry_count}, kMaxTableEntries);
  else if (computed != header.checksum && !options.ignore_checksums)
    table.fault = fmt::format("Checksum {:#010x} does not match the computed {:#010x}", uint32_t{header.checksum},
                              computed);
  else if (computed != header.checksum)
    options.diagnostics->note(fmt::format("{}: region table {} at {:#x}: Checksum {:#010x} does not match the "
                                          "computed {:#010x} (ignored)",
                                          source.name(), index + 1, kRegionTableOffsets[index],
                                          uint32_t{header.checksum}, computed));
  if (!table.fault.empty()) return table;
  static_assert(sizeof(RegionTableHeader) + kMaxTableEntries * sizeof(RegionTableEntry) <= kRegionTableBytes);
  table.entries.resize(header.entry_count);
  if (!table.entries.empty())
    std::memcpy(table.entries.data(), bytes.data() + sizeof header, table.entries.size() * sizeof(RegionTableEntry));
  return table;
}

// ------------------------------------------------------------------ the layer

class VhdxLayer final : public Layer {
 public:
  VhdxLayer(std::unique_ptr<Source> source, uint64_t stored_size, HeaderChoice header, LogReplay replay)
      : source_(std::move(source)), stored_size_(stored_size), header_(std::move(header)), replay_(std::move(replay)) {}

  Result<void> load(const OpenOptions& options);

  const std::string& path() const override { return source_->name(); }
  uint64_t virtual_size() const override { return virtual_size_; }
  uint32_t logical_sector_size() const override { return logical_sector_size_; }
  const ParentLink* parent_link() const override { return is_differencing() ? &parent_ : nullptr; }
  Guid link_id() const override { return header_.header.data_write_guid; }
  std::string format_id(const Guid& id) const override { return guid_to_text(id); }
  Result<void> extents(uint64_t offset, uint64_t length, std::vector<Extent>& out) const override;
  Result<void> read(uint64_t offset, std::span<std::byte> out) const override;
  LayerInfo info() const override;
  FileLayout layout() const;

 private:
  struct MetadataItem {
    uint64_t offset = 0;  // absolute file offset
    uint32_t length = 0;
    uint32_t flags = 0;
  };

  bool is_differencing() const { return (file_flags_ & kHasParent) != 0; }
  uint64_t payload_blocks() const { return ceil_div(virtual_size_, block_size_); }
  uint64_t payload_index(uint64_t block) const { return vhdx::payload_index(block, chunk_ratio_); }
  uint64_t bitmap_index(uint64_t chunk) const { return vhdx::bitmap_index(chunk, chunk_ratio_); }
  uint64_t payload_entry(uint64_t block) const { return bat_[payload_index(block)]; }
  std::string where(const std::string& field) const { return fmt::format("{}: {}", path(), field); }

  Result<void> load_regions(const OpenOptions& options);
  Result<void> load_region_entries(const std::vector<RegionTableEntry>& entries);
  Result<void> load_metadata_table(const OpenOptions& options);
  Result<void> load_metadata_items();
  Result<void> load_parent_locator(Diagnostics& diagnostics);
  Result<void> load_bat(Diagnostics& diagnostics);
  Result<void> check_payload_entry(uint64_t block, Diagnostics& diagnostics);
  Result<void> check_bitmap_entry(uint64_t chunk, Diagnostics& diagnostics);
  Result<void> check_layout(Diagnostics& diagnostics);
  template <typename T>
  Result<T> read_item(const Guid& id) const;
  Result<void> append_partial_runs(uint64_t block, uint64_t from, uint64_t to, std::vector<Extent>& out) const;

  std::unique_ptr<Source> source_;  // the file as it reads after log replay
  uint64_t stored_size_;            // the file's size before replay
  std::string creator_;
  HeaderChoice header_;
  LogReplay replay_;
  std::string region_state_;
  Region bat_region_;
  Region metadata_region_;
  std::vector<std::string> other_regions_;
  std::map<Guid, MetadataItem> items_;
  std::vector<std::string> other_items_;
  uint64_t block_size_ = 0;
  uint32_t file_flags_ = 0;
  uint64_t virtual_size_ = 0;
  Guid virtual_disk_id_{};
  uint32_t logical_sector_size_ = 512;
  uint32_t physical_sector_size_ = 512;
  uint64_t chunk_ratio_ = 1;
  std::vector<std::pair<std::string, std::string>> locator_entries_;
  ParentLink parent_;
  std::vector<uint64_t> bat_;
  bool merge_in_progress_ = false;
};

Result<void> VhdxLayer::load(const OpenOptions& options) {
  Diagnostics& diagnostics = *options.diagnostics;
  TROY_ASSIGN(identifier, read_struct<FileIdentifier>(*source_, 0));
  creator_ = utf16_to_utf8(std::as_bytes(std::span(identifier.creator)), false);
  TROY_TRY(load_regions(options));
  TROY_TRY(load_metadata_table(options));
  TROY_TRY(load_metadata_items());
  if (is_differencing()) TROY_TRY(load_parent_locator(diagnostics));
  TROY_TRY(load_bat(diagnostics));
  return check_layout(diagnostics);
}

// Region table 1 is the one in use; table 2 is its copy, read when table 1
// is damaged.
Result<void> VhdxLayer::load_regions(const OpenOptions& options) {
  Diagnostics& diagnostics = *options.diagnostics;
  TROY_ASSIGN(first, read_region_table(*source_, 0, options));
  TROY_ASSIGN(second, read_region_table(*source_, 1, options));
  if (first.fault.empty()) {
    region_state_ = "region table 1 in use";
    if (!second.fault.empty())
      diagnostics.note(where(fmt::format("region table 2 at {:#x}: {}", kRegionTableOffsets[1], second.fault)));
    else if (second.entries.size() != first.entries.size() ||
             (!first.entries.empty() &&  // two empty tables: data() may be null, which memcmp must not get
              std::memcmp(first.entries.data(), second.entries.data(), first.entries.size() * sizeof(RegionTableEntry))))
      diagnostics.note(where("region table 2 differs from region table 1; using table 1"));
    return load_region_entries(first.entries);
  }
  if (!second.fault.empty())
    return Error{where(fmt::format("no valid region table: table 1 {}, table 2 {}", first.fault, second.fault))};
  diagnostics.note(where(fmt::format("region table 1 at {:#x}: {}; using region table 2", kRegionTableOffsets[0],
                                     first.fault)));
  region_state_ = "region table 2 in use (table 1 damaged)";
  return load_region_entries(second.entries);
}

Result<void> VhdxLayer::load_region_entries(const std::vector<RegionTableEntry>& entries) {
  for (const RegionTableEntry& entry : entries) {
    const uint64_t offset = entry.file_offset;
    const uint64_t length = entry.length;
    const std::string name = entry.guid == kBatRegion        ? "BAT region"
                             : entry.guid == kMetadataRegion ? "metadata region"
                                                             : "region " + guid_to_text(entry.guid);
    Region* region = entry.guid == kBatRegion ? &bat_region_ : entry.guid == kMetadataRegion ? &metadata_region_ : nullptr;
    if (!region) {
      if (entry.required & 1u)
        return Error{where(fmt::format("{} is marked required but Troy does not know it; refusing the file", name))};
      other_regions_.push_back(fmt::format("{} at {:#x}, {} bytes (optional, ignored)", name, offset, length));
      continue;
    }
    if (region->found) return Error{where(fmt::format("region table lists the {} twice", name))};
    if (offset < kHeaderSectionSize || offset % MiB != 0 || length == 0 || length % MiB != 0)
      return Error{where(fmt::format("{}: FileOffset {:#x} / Length {:#x} are not whole MiB after the header section",
                                     name, offset, length))};
    if (!inside_file(source_->size(), offset, length))
      return Error{where(fmt::format("{} at {:#x}, {} bytes, extends past the end of the file ({} bytes)", name,
                                     offset, length, source_->size()))};
    *region = Region{offset, length, true};
  }
  if (!bat_region_.found) return Error{where("region table has no BAT region")};
  if (!metadata_region_.found) return Error{where("region table has no metadata region")};
  return success();
}

Result<void> VhdxLayer::load_metadata_table(const OpenOptions& options) {
  Diagnostics& diagnostics = *options.diagnostics;
  if (metadata_region_.length < kMetadataTableBytes)
    return Error{where("metadata region is smaller than its 64 KiB table")};
  std::vector<std::byte> bytes(kMetadataTableBytes);
  TROY_TRY(source_->read_at(metadata_region_.offset, bytes));
  MetadataTableHeader header;
  std::memcpy(&header, bytes.data(), sizeof header);
  if (std::memcmp(header.signature, "metadata", 8) != 0)
    return Error{where(fmt::format("metadata table at {:#x}: signature is not 'metadata'", metadata_region_.offset))};
  if (header.entry_count > kMaxTableEntries)
    return Error{where(fmt::format("metadata table EntryCount {} is more than {}", uint16_t{header.entry_count},
                                   kMaxTableEntries))};
  std::vector<Interval> used{{0, kMetadataTableBytes, "metadata table"}};
  for (uint32_t i = 0; i < header.entry_count; i++) {
    MetadataTableEntry entry;
    std::memcpy(&entry, bytes.data() + sizeof header + i * sizeof entry, sizeof entry);
    const KnownItem* known = known_item(entry.item_id);
    const bool user = (entry.flags & kIsUser) != 0;
    const std::string name = known && !user
                                 ? std::string(known->name)
                                 : fmt::format("{} item {}", user ? "user" : "system", guid_to_text(entry.item_id));
    const uint64_t offset = entry.offset;
    const uint64_t length = entry.length;
    if (length > kMaxMetadataItemLength || (length != 0 && offset < kMetadataTableBytes) ||
        offset + length > metadata_region_.length)
      return Error{where(fmt::format("metadata item {}: Offset {:#x} / Length {} lie outside the metadata region",
                                     name, offset, length))};
    if (length != 0) used.push_back({offset, offset + length, "metadata item " + name});
    else if (offset != 0)
      diagnostics.note(where(fmt::format("metadata item {}: Length 0 with Offset {:#x} (the spec wants Offset 0)",
                                         name, offset)));
    if (entry.item_id == kTroyMergeInProgressItem) {
      if (!options.merge_in_progress_ok)
        return Error{where("a troy merge into this image is unfinished (metadata item 'troy merge in progress'): its "
                           "content is partly merged; run the same troy merge again to finish it")};
      merge_in_progress_ = true;
      continue;
    }
    if (!known || user) {
      // [MS-VHDX] 2.6.1.2: IsRequired binds user items too.
      if (entry.flags & kIsRequired)
        return Error{where(fmt::format("metadata {} is marked required but Troy does not know it; refusing the file",
                                       name))};
      other_items_.push_back(fmt::format("{}, {} bytes (ignored)", name, length));
      continue;
    }
    if (items_.count(entry.item_id)) return Error{where(fmt::format("metadata table lists {} twice", name))};
    if (length < known->min_length)
      return Error{where(fmt::format("metadata item {}: Length {} is shorter than its {} bytes", name, length,
                                     known->min_length))};
    items_[entry.item_id] = MetadataItem{metadata_region_.offset + offset, entry.length, entry.flags};
  }
  return report_overlaps(std::move(used), where("metadata region"), diagnostics);
}

template <typename T>
Result<T> VhdxLayer::read_item(const Guid& id) const {
  const auto item = items_.find(id);
  if (item == items_.end()) {
    return Error{where(fmt::format("metadata item {} is missing", known_item(id)->name))};
  }
  return read_struct<T>(*source_, item->second.offset);
}

Result<void> VhdxLayer::load_metadata_items() {
  TROY_ASSIGN(parameters, read_item<FileParameters>(kFileParametersItem));
  TROY_ASSIGN(size, read_item<ul64>(kVirtualDiskSizeItem));
  TROY_ASSIGN(disk_id, read_item<Guid>(kVirtualDiskIdItem));
  TROY_ASSIGN(logical, read_item<ul32>(kLogicalSectorSizeItem));
  TROY_ASSIGN(physical, read_item<ul32>(kPhysicalSectorSizeItem));
  block_size_ = parameters.block_size;
  file_flags_ = parameters.flags;
  virtual_size_ = size;
  virtual_disk_id_ = disk_id;
  logical_sector_size_ = logical;
  physical_sector_size_ = physical;
  if (!std::has_single_bit(block_size_) || block_size_ < kMinBlockSize || block_size_ > kMaxBlockSize)
    return Error{where(fmt::format("File Parameters BlockSize {} is not a power of two between 1 MiB and 256 MiB",
                                   block_size_))};
  if (logical_sector_size_ != 512 && logical_sector_size_ != 4096)
    return Error{where(fmt::format("Logical Sector Size {} is neither 512 nor 4096", logical_sector_size_))};
  if (physical_sector_size_ != 512 && physical_sector_size_ != 4096)
    return Error{where(fmt::format("Physical Sector Size {} is neither 512 nor 4096", physical_sector_size_))};
  if (virtual_size_ > kMaxVirtualSize)
    return Error{where(fmt::format("Virtual Disk Size {} is larger than the VHDX maximum of 64 TiB", virtual_size_))};
  if (virtual_size_ % logical_sector_size_ != 0)
    return Error{where(fmt::format("Virtual Disk Size {} is not a multiple of the logical sector size {}",
                                   virtual_size_, logical_sector_size_))};
  chunk_ratio_ = kSectorsPerChunk * logical_sector_size_ / block_size_;
  if (is_differencing() && !items_.count(kParentLocatorItem))
    return Error{where("File Parameters say HasParent but the Parent Locator metadata item is missing")};
  return success();
}

Result<void> VhdxLayer::load_parent_locator(Diagnostics& diagnostics) {
  const MetadataItem& item = items_.at(kParentLocatorItem);
  std::vector<std::byte> bytes(item.length);
  TROY_TRY(source_->read_at(item.offset, bytes));
  ParentLocatorHeader header;
  std::memcpy(&header, bytes.data(), sizeof header);
  if (header.locator_type != kVhdxParentLocatorType)
    return Error{where(fmt::format("Parent Locator LocatorType {} is not the VHDX parent locator type",
                                   guid_to_text(header.locator_type)))};
  const uint64_t count = header.key_value_count;
  if (sizeof header + count * sizeof(ParentLocatorKeyValue) > bytes.size())
    return Error{where(fmt::format("Parent Locator KeyValueCount {} does not fit in its {} bytes", count, bytes.size()))};
  std::map<std::string, std::string> values;
  for (uint64_t i = 0; i < count; i++) {
    ParentLocatorKeyValue entry;
    std::memcpy(&entry, bytes.data() + sizeof header + i * sizeof entry, sizeof entry);
    const uint64_t key_end = uint64_t{entry.key_offset} + entry.key_length;
    const uint64_t value_end = uint64_t{entry.value_offset} + entry.value_length;
    if (key_end > bytes.size() || value_end > bytes.size())
      return Error{where(fmt::format("Parent Locator entry {} points outside the item", i))};
    const std::string key = utf16_to_utf8(std::span(bytes).subspan(entry.key_offset, entry.key_length), false);
    const std::string value = utf16_to_utf8(std::span(bytes).subspan(entry.value_offset, entry.value_length), false);
    if (values.count(key)) TROY_TRY(diagnostics.problem(where(fmt::format("Parent Locator key {} appears twice", key))));
    values[key] = value;
    locator_entries_.emplace_back(key, value);
  }
  const auto linkage = values.find("parent_linkage");
  if (linkage == values.end()) return Error{where("Parent Locator has no parent_linkage key")};
  const std::optional<Guid> expected = guid_from_text(linkage->second);
  if (!expected) return Error{where(fmt::format("Parent Locator parent_linkage '{}' is not a GUID", linkage->second))};
  parent_.expected_id = *expected;
  parent_.expected_id_field = "parent_linkage";
  parent_.parent_id_field = "DataWriteGuid";
  // Tried in this order: the relative path first, as Hyper-V does.
  for (const char* key : {"relative_path", "volume_path", "absolute_win32_path"}) {
    const auto found = values.find(key);
    if (found != values.end() && !found->second.empty())
      parent_.locators.push_back({key, found->second, std::string_view(key) == "relative_path"});
  }
  return success();
}

Result<void> VhdxLayer::load_bat(Diagnostics& diagnostics) {
  const uint64_t blocks = payload_blocks();
  // Payload and sector bitmap entries interleave: CR payload entries, then
  // the bitmap entry of their chunk.
  const uint64_t entries = bat_entry_count(blocks, chunk_ratio_, is_differencing());
  if (entries * 8 > bat_region_.length)
    return Error{where(fmt::format("BAT region of {} bytes is too small for {} entries ({} blocks of {} bytes)",
                                   bat_region_.length, entries, blocks, block_size_))};
  // Read in place and decode each entry where it lies: one copy of the BAT
  // in memory, which for a 64 TiB disk of 1 MiB blocks is 512 MiB.
  bat_.resize(entries);
  TROY_TRY(source_->read_at(bat_region_.offset, std::as_writable_bytes(std::span(bat_))));
  for (uint64_t& entry : bat_) entry = std::bit_cast<ul64>(entry);
  for (uint64_t block = 0; block < blocks; block++) TROY_TRY(check_payload_entry(block, diagnostics));
  for (uint64_t chunk = 0; chunk * chunk_ratio_ < blocks; chunk++) {
    if (is_differencing()) TROY_TRY(check_bitmap_entry(chunk, diagnostics));
    else if (bitmap_index(chunk) < bat_.size() && state_of(bat_[bitmap_index(chunk)]) != kBitmapNotPresent)
      // Never read in a file without a parent; old qemu wrote garbage here (qemu issue 727).
      diagnostics.note(where(fmt::format("BAT sector bitmap entry for chunk {}: state {} in a file without a parent, "
                                         "where only SB_NOT_PRESENT (0) is valid",
                                         chunk, state_of(bat_[bitmap_index(chunk)]))));
  }
  return success();
}

// A payload entry with a state this file type cannot have, or data outside
// the file, is reported and then read as not present.
Result<void> VhdxLayer::check_payload_entry(uint64_t block, Diagnostics& diagnostics) {
  uint64_t& entry = bat_[payload_index(block)];
  const uint64_t state = state_of(entry);
  std::string fault;
  if (state == 4 || (state == kPartiallyPresent && !is_differencing())) {
    fault = fmt::format("{} is invalid in a {} file", state_name(state),
                        is_differencing() ? "differencing" : "non-differencing");
  } else if (has_data(state)) {
    const uint64_t used = std::min(block_size_, virtual_size_ - block * block_size_);
    const uint64_t offset = offset_of(entry);
    if (offset < kHeaderSectionSize) fault = fmt::format("{} at FileOffsetMB {}, inside the header section", state_name(state), offset / MiB);
    else if (!inside_file(source_->size(), offset, used))
      fault = fmt::format("{} block at {:#x} extends past the end of the file ({} bytes)", state_name(state), offset,
                          source_->size());
  }
  if (fault.empty() && (entry & kBatReservedMask) != 0)
    diagnostics.note(where(fmt::format("BAT entry for block {}: reserved bits {:#x} are set", block, entry & kBatReservedMask)));
  if (fault.empty()) return success();
  TROY_TRY(diagnostics.problem(where(fmt::format("BAT entry for block {}: {}", block, fault))));
  entry = kNotPresent;
  return success();
}

Result<void> VhdxLayer::check_bitmap_entry(uint64_t chunk, Diagnostics& diagnostics) {
  uint64_t& entry = bat_[bitmap_index(chunk)];
  const uint64_t state = state_of(entry);
  const uint64_t first = chunk * chunk_ratio_;
  const uint64_t last = std::min(payload_blocks(), first + chunk_ratio_);
  const auto partial = [&] {
    for (uint64_t block = first; block < last; block++)
      if (state_of(payload_entry(block)) == kPartiallyPresent) return true;
    return false;
  }();
  std::string fault;
  if (state != kBitmapNotPresent && state != kBitmapPresent) {
    fault = fmt::format("invalid sector bitmap state {}", state);
  } else if (state == kBitmapPresent) {
    const uint64_t offset = offset_of(entry);
    if (offset < kHeaderSectionSize || !inside_file(source_->size(), offset, kSectorBitmapBlockSize))
      fault = fmt::format("sector bitmap block at {:#x} lies outside the file ({} bytes)", offset, source_->size());
  } else if (partial) {
    fault = "SB_NOT_PRESENT, but a block of this chunk is PARTIALLY_PRESENT (missing sector bitmap block)";
  }
  if (fault.empty()) return success();
  TROY_TRY(diagnostics.problem(where(fmt::format("BAT sector bitmap entry for chunk {}: {}", chunk, fault))));
  entry = kBitmapNotPresent;
  // Without a bitmap, partially present blocks of the chunk cannot be read.
  for (uint64_t block = first; block < last; block++)
    if (state_of(payload_entry(block)) == kPartiallyPresent) bat_[payload_index(block)] = kNotPresent;
  return success();
}

Result<void> VhdxLayer::check_layout(Diagnostics& diagnostics) {
  std::vector<Interval> used;
  used.push_back({0, kHeaderSectionSize, "header section"});
  if (header_.header.log_length != 0)
    used.push_back({header_.header.log_offset, header_.header.log_offset + header_.header.log_length, "log"});
  used.push_back({bat_region_.offset, bat_region_.offset + bat_region_.length, "BAT region"});
  used.push_back({metadata_region_.offset, metadata_region_.offset + metadata_region_.length, "metadata region"});
  for (uint64_t block = 0; block < payload_blocks(); block++) {
    const uint64_t entry = payload_entry(block);
    if (!has_data(state_of(entry))) continue;
    const uint64_t length = round_up(std::min(block_size_, virtual_size_ - block * block_size_), MiB);
    used.push_back({offset_of(entry), offset_of(entry) + length, fmt::format("block {}", block)});
  }
  for (uint64_t chunk = 0; is_differencing() && chunk * chunk_ratio_ < payload_blocks(); chunk++) {
    const uint64_t entry = bat_[bitmap_index(chunk)];
    if (state_of(entry) == kBitmapPresent)
      used.push_back({offset_of(entry), offset_of(entry) + kSectorBitmapBlockSize,
                      fmt::format("sector bitmap of chunk {}", chunk)});
  }
  return report_overlaps(std::move(used), where("layout"), diagnostics);
}

// Appends the runs of a PARTIALLY_PRESENT block whose sector bitmap bits are
// set (least significant bit first) inside [from, to).
Result<void> VhdxLayer::append_partial_runs(uint64_t block, uint64_t from, uint64_t to, std::vector<Extent>& out) const {
  const uint64_t sector = logical_sector_size_;
  const uint64_t block_start = block * block_size_;
  const uint64_t first_sector = (from - block_start) / sector;
  const uint64_t end_sector = ceil_div(to - block_start, sector);
  // Bit of the block's first sector within its chunk's bitmap block.
  const uint64_t base_bit = (block % chunk_ratio_) * (block_size_ / sector);
  const uint64_t first_byte = (base_bit + first_sector) / 8;
  const uint64_t end_byte = ceil_div(base_bit + end_sector, 8);
  std::vector<uint8_t> bits(end_byte - first_byte);
  const uint64_t bitmap_offset = offset_of(bat_[bitmap_index(block / chunk_ratio_)]);
  TROY_TRY(source_->read_at(bitmap_offset + first_byte, std::as_writable_bytes(std::span(bits))));
  auto set = [&](uint64_t s) {
    const uint64_t bit = base_bit + s - first_byte * 8;
    return ((bits[bit / 8] >> (bit % 8)) & 1u) != 0;
  };
  append_set_runs(BitmapWindow{block_start, sector, from, to}, set, out);
  return success();
}

Result<void> VhdxLayer::extents(uint64_t offset, uint64_t length, std::vector<Extent>& out) const {
  const uint64_t end = std::min(offset + length, virtual_size_);
  for (uint64_t block = offset / block_size_; offset < end && block * block_size_ < end; block++) {
    const uint64_t from = std::max(offset, block * block_size_);
    const uint64_t to = std::min(end, (block + 1) * block_size_);
    const uint64_t state = state_of(payload_entry(block));
    if (state == kFullyPresent) append_extent(out, from, to, ExtentKind::Data);
    else if (state == kPartiallyPresent) TROY_TRY(append_partial_runs(block, from, to, out));
    // Over a parent, ZERO and UNMAPPED blocks hide the parent's data; in a
    // base they read as zeros like any block without data.
    else if (is_differencing() && (state == kZero || is_unmapped(state))) append_extent(out, from, to, ExtentKind::Zero);
  }
  return success();
}

Result<void> VhdxLayer::read(uint64_t offset, std::span<std::byte> out) const {
  while (!out.empty()) {
    const uint64_t block = offset / block_size_;
    const uint64_t within = offset % block_size_;
    const size_t count = std::min<uint64_t>(out.size(), block_size_ - within);
    const uint64_t entry = offset < virtual_size_ ? payload_entry(block) : 0;
    if (has_data(state_of(entry))) {
      // Past the virtual disk's end inside the last block reads zeros.
      const uint64_t inside = std::min<uint64_t>(count, virtual_size_ - offset);
      TROY_TRY(source_->read_at(offset_of(entry) + within, out.first(inside)));
      std::memset(out.data() + inside, 0, count - inside);
    } else {
      std::memset(out.data(), 0, count);
    }
    out = out.subspan(count);
    offset += count;
  }
  return success();
}

FileLayout VhdxLayer::layout() const {
  FileLayout layout;
  layout.header = header_.header;
  layout.header_index = header_.index;
  layout.bat_offset = bat_region_.offset;
  layout.bat_length = bat_region_.length;
  layout.bat = bat_;
  layout.block_size = block_size_;
  layout.chunk_ratio = chunk_ratio_;
  layout.virtual_size = virtual_size_;
  layout.logical_sector_size = logical_sector_size_;
  layout.differencing = is_differencing();
  layout.metadata_offset = metadata_region_.offset;
  layout.metadata_length = metadata_region_.length;
  layout.merge_in_progress = merge_in_progress_;
  return layout;
}

std::string log_state(const LogReplay& replay, const Header& header) {
  if (header.log_guid == Guid{}) return "clean (LogGuid is zero)";
  if (!replay.needed) return "LogGuid set, no valid entries: nothing to replay";
  return fmt::format("dirty: {} entr{} (sequence {}..{}) replayed in memory, the file is not modified",
                     replay.entries, replay.entries == 1 ? "y" : "ies", replay.first_sequence, replay.last_sequence);
}

LayerInfo VhdxLayer::info() const {
  LayerInfo info;
  info.format = "vhdx";
  info.type = is_differencing() ? "differencing" : (file_flags_ & kLeaveBlockAllocated) ? "fixed" : "dynamic";
  info.virtual_size = virtual_size_;
  info.logical_sector_size = logical_sector_size_;
  info.block_size = block_size_;
  info.file_size = stored_size_;
  std::map<uint64_t, uint64_t> states;
  for (uint64_t block = 0; block < payload_blocks(); block++) states[state_of(payload_entry(block))]++;
  for (const uint64_t state : {kFullyPresent, kPartiallyPresent})
    if (states.count(state)) info.allocated_blocks += states.at(state);
  info.allocated_bytes = info.allocated_blocks * block_size_;
  info.id = guid_to_text(link_id());
  info.creator = creator_;
  const Header& h = header_.header;
  auto& d = info.details;
  d.push_back(info_detail("physical_sector_size", std::to_string(physical_sector_size_), uint64_t{physical_sector_size_}));
  d.push_back(info_detail("chunk_ratio", std::to_string(chunk_ratio_), uint64_t{chunk_ratio_}));
  d.push_back(InfoDetail{"log", log_state(replay_, h),
                         {{"state", h.log_guid == Guid{} ? "clean" : replay_.needed ? "dirty" : "empty"},
                          {"entries", uint64_t{replay_.entries}},
                          {"first_sequence", replay_.first_sequence},
                          {"last_sequence", replay_.last_sequence}}});
  d.push_back(InfoDetail{"headers", fmt::format("{}, sequence {}", header_.state, uint64_t{h.sequence_number}),
                         {{"state", header_.state}, {"sequence", uint64_t{h.sequence_number}}}});
  d.push_back(info_detail("region_table", region_state_, region_state_));
  for (const auto& [key, guid] : {std::pair{"data_write_guid", h.data_write_guid},
                                  std::pair{"file_write_guid", h.file_write_guid}, std::pair{"log_guid", h.log_guid}})
    d.push_back(info_detail(key, guid_to_text(guid), guid_to_text(guid)));
  const auto region = [](std::string key, uint64_t offset, uint64_t length) {
    return InfoDetail{std::move(key), fmt::format("{:#x}, {} bytes", offset, length),
                      {{"offset", offset}, {"length_bytes", length}}};
  };
  d.push_back(region("log_region", h.log_offset, h.log_length));
  d.push_back(info_detail("virtual_disk_id", guid_to_text(virtual_disk_id_), guid_to_text(virtual_disk_id_)));
  d.push_back(region("bat_region", bat_region_.offset, bat_region_.length));
  d.push_back(region("metadata_region", metadata_region_.offset, metadata_region_.length));
  const bool leave_allocated = (file_flags_ & kLeaveBlockAllocated) != 0;
  d.push_back(info_detail("leave_blocks_allocated", leave_allocated ? "yes" : "no", leave_allocated));
  InfoDetail counts{"block_states", "", {}};
  for (const auto& [state, count] : states) {
    counts.text += fmt::format("{}{} {}", counts.text.empty() ? "" : ", ", state_name(state), count);
    counts.fields.emplace_back(state_name(state), count);
  }
  d.push_back(std::move(counts));
  for (const std::string& other : other_regions_) d.push_back(info_detail("other_region", other, other));
  for (const std::string& item : other_items_) d.push_back(info_detail("other_metadata", item, item));
  for (const auto& [key, value] : locator_entries_)
    d.push_back(InfoDetail{"parent_locator", key + " = " + value, {{"key", key}, {"value", value}}});
  return info;
}

}  // namespace

std::string guid_to_text(const Guid& stored) {
  const Guid text_order = to_stored_order(stored);  // the swap is its own inverse
  const std::string hex = to_hex(text_order);
  return fmt::format("{}-{}-{}-{}-{}", hex.substr(0, 8), hex.substr(8, 4), hex.substr(12, 4), hex.substr(16, 4),
                     hex.substr(20));
}

std::optional<Guid> guid_from_text(std::string_view text) {
  if (text.size() == 38 && text.front() == '{' && text.back() == '}') text = text.substr(1, 36);
  if (text.size() != 36) return std::nullopt;
  Guid bytes{};
  int nibble = 0;
  for (size_t i = 0; i < text.size(); i++) {
    const bool dash_position = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash_position != (text[i] == '-')) return std::nullopt;
    if (dash_position) continue;
    const int digit = hex_digit(text[i]);
    if (digit < 0) return std::nullopt;
    bytes[nibble / 2] = static_cast<uint8_t>(bytes[nibble / 2] << 4 | digit);
    nibble++;
  }
  return to_stored_order(bytes);
}

bool probe(const Source& source) {
  if (source.size() < sizeof(FileIdentifier)) return false;
  char signature[8];
  if (!source.read_at(0, std::as_writable_bytes(std::span(signature))).ok()) return false;
  return std::memcmp(signature, "vhdxfile", 8) == 0;
}

namespace {

Result<void> apply_writes(RandomAccessFile& file, const LogReplay& replay) {
  const std::vector<std::byte> zeros(kLogSectorSize);
  for (const LogWrite& write : replay.writes) {
    if (!write.data.empty()) {
      TROY_TRY(file.write_at(write.offset, write.data));
      continue;
    }
    for (uint64_t done = 0; done < write.length; done += kLogSectorSize)
      TROY_TRY(file.write_at(write.offset + done, std::span(zeros).first(std::min(kLogSectorSize, write.length - done))));
  }
  if (file.size() < replay.last_file_offset) TROY_TRY(file.set_size(replay.last_file_offset));
  return file.flush();
}

}  // namespace

Result<void> write_next_header(RandomAccessFile& file, Header header, int& current_index) {
  const int slot = 1 - current_index;
  header.sequence_number = header.sequence_number + 1;
  header.checksum = 0;
  header.checksum = crc32c(bytes_of(header));
  TROY_TRY(file.write_at(kHeaderOffsets[slot], bytes_of(header)));
  TROY_TRY(file.flush());
  current_index = slot;
  return success();
}

Result<InPlaceReplay> replay_log_in_place(const std::string& path) {
  TROY_ASSIGN(file, WritableFile::open(path));
  if (!probe(*file)) return Error{fmt::format("{}: not a VHDX file (no 'vhdxfile' identifier)", path)};
  return replay_log_in_place(*file);
}

Result<InPlaceReplay> replay_log_in_place(RandomAccessFile& file) {
  Diagnostics diagnostics;
  OpenOptions options;
  options.diagnostics = &diagnostics;
  TROY_ASSIGN(choice, choose_header(file, options));
  std::string remark;
  TROY_ASSIGN(replay, find_log_replay(file, choice.header, remark));
  InPlaceReplay result;
  if (choice.header.log_guid == Guid{}) return result;
  result.replayed = replay.needed;
  result.entries = replay.entries;
  result.writes = replay.writes.size();
  result.first_sequence = replay.first_sequence;
  result.last_sequence = replay.last_sequence;
  if (replay.needed) TROY_TRY(apply_writes(file, replay));
  TROY_ASSIGN(file_write_guid, random_guid());
  choice.header.log_guid = Guid{};
  choice.header.file_write_guid = file_write_guid;
  // Written twice, each time into the slot that is not current, so both
  // copies end up valid and the later one current.
  for (int round = 0; round < 2; round++) {
    TROY_TRY(write_next_header(file, choice.header, choice.index));
    choice.header.sequence_number = choice.header.sequence_number + 1;
  }
  result.headers_rewritten = true;
  return result;
}

namespace {

Result<std::unique_ptr<VhdxLayer>> open_vhdx(std::unique_ptr<Source> source, const OpenOptions& options) {
  if (source->size() < kHeaderSectionSize)
    return Error{fmt::format("{}: file of {} bytes is too small for the 1 MiB VHDX header section", source->name(),
                             source->size())};
  TROY_ASSIGN(header, choose_header(*source, options));
  std::string remark;
  TROY_ASSIGN(replay, find_log_replay(*source, header.header, remark));
  // A set LogGuid with nothing valid to replay is what a writer leaves when
  // it stops after announcing changes and before its first log entry is
  // complete: the file is consistent, so this is a warning, not a problem.
  if (!remark.empty()) options.diagnostics->warnings.push_back(remark);
  if (replay.needed)
    options.diagnostics->warnings.push_back(fmt::format(
        "{}: the log holds {} entr{} not yet applied (the file was not closed cleanly); reading the image as "
        "replayed, without modifying the file",
        source->name(), replay.entries, replay.entries == 1 ? "y" : "ies"));
  const uint64_t stored_size = source->size();
  LogReplay summary = replay;  // for `troy info`; the writes live in the view only
  summary.writes.clear();
  std::unique_ptr<Source> view = std::make_unique<ReplayedSource>(std::move(source), std::move(replay));
  auto layer = std::make_unique<VhdxLayer>(std::move(view), stored_size, std::move(header), std::move(summary));
  TROY_TRY(layer->load(options));
  return layer;
}

}  // namespace

Result<std::unique_ptr<Layer>> open(std::unique_ptr<Source> source, const OpenOptions& options) {
  TROY_ASSIGN(layer, open_vhdx(std::move(source), options));
  return std::unique_ptr<Layer>(std::move(layer));
}

Result<FileLayout> read_layout(std::unique_ptr<Source> source, const OpenOptions& options) {
  const std::string name = source->name();
  TROY_ASSIGN(layer, open_vhdx(std::move(source), options));
  FileLayout layout = layer->layout();
  if (layout.header.log_guid != Guid{})
    return Error{fmt::format("{}: LogGuid is set: the log must be replayed before the file is changed", name)};
  return layout;
}

}  // namespace troy::vhdx
