// Changing a VHDX file in place ([MS-VHDX] 2.3 "Log", 2.5 "BAT"). Payload
// data is written straight to its block; every metadata change (BAT pages,
// sector bitmap pages) goes through the log: the data is flushed, the log
// entry holding the new 4 KiB pages is written and flushed, then the pages
// are written in place and flushed. A crash at any point leaves a file that
// a reader replays to a consistent state. See docs/formats.md, "Changing a
// VHDX in place".
#include <algorithm>
#include <cstring>
#include <map>
#include <set>
#include <vector>

#include <fmt/format.h>

#include "crc32c.h"
#include "layout.h"
#include "random.h"
#include "updater.h"
#include "vhdx.h"
#include "vhdx_format.h"
#include "writeback.h"
#include "writer.h"

namespace troy::vhdx {
namespace {

// One log entry holds at most this many 4 KiB pages, and never more than a
// quarter of the log: a new entry then never overlaps the previous one, even
// when it wraps to the start of the log, so the newest complete entry always
// survives a torn write of the next.
constexpr uint64_t kMaxDescriptorsPerSector = (kLogSectorSize - sizeof(LogEntryHeader)) / sizeof(LogDescriptor);

struct Page {
  uint64_t file_offset;
  std::vector<std::byte> bytes;  // 4 KiB
};

constexpr char kMergeInProgressMark[8] = {'t', 'r', 'o', 'y', 'm', 'r', 'g', 'e'};

// Notes the 4 KiB pages that [from, from + length) touches.
void note_pages_of(std::set<uint64_t>& pages, uint64_t from, uint64_t length) {
  for (uint64_t page = from / kLogSectorSize; page * kLogSectorSize < from + length; page++) pages.insert(page);
}

// A differencing block in NOT_PRESENT or UNDEFINED reads its parent's
// content (docs/formats.md: Windows and troy's reader treat UNDEFINED so).
bool reads_parent_state(uint64_t state) { return state == kNotPresent || state == kUndefined; }

// The metadata table's entries ([MS-VHDX] 2.6.1), as stored.
std::vector<MetadataTableEntry> metadata_entries(const std::vector<std::byte>& region) {
  MetadataTableHeader header;
  std::memcpy(&header, region.data(), sizeof header);
  const uint64_t count =
      std::min<uint64_t>(header.entry_count, (kMetadataTableBytes - sizeof header) / sizeof(MetadataTableEntry));
  std::vector<MetadataTableEntry> entries(count);
  std::memcpy(entries.data(), region.data() + sizeof header, count * sizeof(MetadataTableEntry));
  return entries;
}

// Builds one log entry: a descriptor sector, then one data sector per page.
std::vector<std::byte> make_log_entry(const std::vector<Page>& pages, uint64_t sequence, uint64_t tail,
                                      const Guid& log_guid, uint64_t file_size) {
  std::vector<std::byte> entry((1 + pages.size()) * kLogSectorSize);
  LogEntryHeader header{};
  header.signature = kLogEntrySignature;
  header.entry_length = static_cast<uint32_t>(entry.size());
  header.tail = static_cast<uint32_t>(tail);
  header.sequence_number = sequence;
  header.descriptor_count = static_cast<uint32_t>(pages.size());
  header.log_guid = log_guid;
  header.flushed_file_offset = file_size;
  header.last_file_offset = file_size;
  for (size_t i = 0; i < pages.size(); i++) {
    const std::vector<std::byte>& page = pages[i].bytes;
    LogDescriptor descriptor{};
    descriptor.signature = kDataDescriptorSignature;
    // The page's first 8 and last 4 bytes live in the descriptor, as stored.
    std::memcpy(&descriptor.leading_bytes_or_zero_length, page.data(), 8);
    std::memcpy(&descriptor.trailing_bytes, page.data() + kLogSectorSize - 4, 4);
    descriptor.file_offset = pages[i].file_offset;
    descriptor.sequence_number = sequence;
    std::memcpy(entry.data() + sizeof header + i * sizeof descriptor, &descriptor, sizeof descriptor);
    LogDataSector sector{};
    sector.signature = kDataSectorSignature;
    sector.sequence_high = static_cast<uint32_t>(sequence >> 32);
    sector.sequence_low = static_cast<uint32_t>(sequence);
    std::memcpy(sector.data, page.data() + 8, sizeof sector.data);
    std::memcpy(entry.data() + (1 + i) * kLogSectorSize, &sector, sizeof sector);
  }
  std::memcpy(entry.data(), &header, sizeof header);
  const uint32_t checksum = crc32c(entry);
  std::memcpy(entry.data() + 4, bytes_of(ul32{checksum}).data(), 4);
  return entry;
}

class VhdxUpdater final : public ImageUpdater {
 public:
  VhdxUpdater(std::unique_ptr<RandomAccessFile> file, FileLayout layout, const Guid& data_write_guid)
      : file_(std::move(file)), layout_(std::move(layout)), next_data_write_guid_(data_write_guid),
        writeback_(*file_) {
    sectors_per_block_ = layout_.block_size / layout_.logical_sector_size;
    next_free_ = round_up(file_->size(), MiB);
    const uint64_t log_length = layout_.header.log_length;
    max_pages_ = std::min<uint64_t>(kMaxDescriptorsPerSector, log_length / 4 / kLogSectorSize - 1);
  }

  uint64_t virtual_size() const override { return layout_.virtual_size; }
  uint32_t logical_sector_size() const override { return layout_.logical_sector_size; }
  uint64_t block_size() const override { return layout_.block_size; }
  uint64_t blocks_allocated() const override { return blocks_allocated_; }
  Guid link_id() const override { return next_data_write_guid_; }
  Result<void> grow(uint64_t virtual_size) override;
  Result<void> can_grow(uint64_t virtual_size) const override;
  Result<void> set_merge_in_progress(bool in_progress) override;
  Result<void> set_parent(const ParentRecord& parent) override;
  Result<void> write(uint64_t offset, std::span<const std::byte> data) override;
  Result<void> write_zeros(uint64_t offset, uint64_t length) override;
  Result<void> commit() override;
  Result<void> close() override;

 private:
  uint64_t payload_index(uint64_t block) const { return vhdx::payload_index(block, layout_.chunk_ratio); }
  uint64_t bitmap_index(uint64_t chunk) const { return vhdx::bitmap_index(chunk, layout_.chunk_ratio); }
  uint64_t sectors_in(uint64_t block) const {
    return std::min(layout_.block_size, layout_.virtual_size - block * layout_.block_size) /
           layout_.logical_sector_size;
  }

  Result<void> check_range_of_disk(uint64_t offset, uint64_t length) const {
    return writer_detail::check_range(file_->name(), layout_.virtual_size, layout_.logical_sector_size, offset, length);
  }
  Result<void> begin_changes(bool data_changes);
  void set_entry(uint64_t index, uint64_t value);
  Result<uint64_t> allocate(uint64_t bytes);
  Result<uint64_t> writable_block(uint64_t block);
  Result<std::vector<uint8_t>*> chunk_bitmap(uint64_t chunk);
  Result<void> mark_sectors(uint64_t block, uint64_t first, uint64_t count);
  void promote_full_blocks();
  std::vector<Page> dirty_pages() const;
  Result<void> log_and_apply(const std::vector<Page>& pages);
  Result<std::vector<std::byte>> read_metadata_region() const;
  std::vector<Page> metadata_pages(const std::vector<std::byte>& region, const std::set<uint64_t>& pages) const;
  Result<size_t> find_item(const std::vector<MetadataTableEntry>& entries, const Guid& id) const;

  std::unique_ptr<RandomAccessFile> file_;
  FileLayout layout_;
  uint64_t sectors_per_block_ = 0;
  uint64_t next_free_ = 0;
  uint64_t max_pages_ = 0;
  uint64_t blocks_allocated_ = 0;
  Guid next_data_write_guid_;
  bool changing_ = false;       // the header announces changes (a new FileWriteGuid, a LogGuid)
  bool data_changing_ = false;  // ... and the new DataWriteGuid
  Guid log_guid_{};
  uint64_t log_sequence_ = 0;
  uint64_t log_head_ = 0;  // where the next entry goes, relative to the log
  std::set<uint64_t> dirty_bat_pages_;
  std::map<uint64_t, std::vector<uint8_t>> bitmaps_;           // chunk -> its 1 MiB sector bitmap
  std::map<uint64_t, std::set<uint64_t>> dirty_bitmap_pages_;  // chunk -> pages changed
  std::set<uint64_t> marked_blocks_;                            // partial blocks marked since the last commit
  WritebackStretch writeback_;  // written data not yet handed to start_writeback
  bool data_unflushed_ = false;  // payload written since the last commit's flush
};

// Before the first change: a new FileWriteGuid and a new LogGuid that the
// log entries will carry, in a header flushed first; before the first change
// of the disk's data also the new DataWriteGuid ([MS-VHDX] 2.2.2), which
// children then no longer match. Changing only the parent locator leaves
// DataWriteGuid alone: what the disk reads does not change.
Result<void> VhdxUpdater::begin_changes(bool data_changes) {
  if (changing_ && (data_changing_ || !data_changes)) return success();
  if (!changing_) {
    TROY_ASSIGN(file_write, random_guid());
    TROY_ASSIGN(log_guid, random_guid());
    layout_.header.file_write_guid = file_write;
    layout_.header.log_guid = log_guid;
    log_guid_ = log_guid;
  }
  if (data_changes) layout_.header.data_write_guid = next_data_write_guid_;
  TROY_TRY(write_next_header(*file_, layout_.header, layout_.header_index));
  layout_.header.sequence_number = layout_.header.sequence_number + 1;
  changing_ = true;
  data_changing_ = data_changing_ || data_changes;
  return success();
}

void VhdxUpdater::set_entry(uint64_t index, uint64_t value) {
  layout_.bat[index] = value;
  dirty_bat_pages_.insert(index * 8 / kLogSectorSize);
}

// New space at the end of the file, 1 MiB aligned. It reads zeros until
// written: it lies past the old end of the file.
Result<uint64_t> VhdxUpdater::allocate(uint64_t bytes) {
  const uint64_t at = next_free_;
  next_free_ += bytes;
  TROY_TRY(file_->set_size(next_free_));
  return at;
}

// The file offset of a block's data, allocating the block if it has none. A
// differencing block that read as zeros (ZERO, UNMAPPED) reads zeros in all
// its sectors once allocated, so they are all marked present.
Result<uint64_t> VhdxUpdater::writable_block(uint64_t block) {
  const uint64_t index = payload_index(block);
  const uint64_t state = state_of(layout_.bat[index]);
  if (state == kFullyPresent || state == kPartiallyPresent) return offset_of(layout_.bat[index]);
  TROY_ASSIGN(at, allocate(layout_.block_size));
  blocks_allocated_++;
  const bool reads_parent = layout_.differencing && reads_parent_state(state);
  set_entry(index, make_entry(reads_parent ? kPartiallyPresent : kFullyPresent, at));
  return at;
}

// The chunk's sector bitmap, read from the file (or allocated) on first use.
Result<std::vector<uint8_t>*> VhdxUpdater::chunk_bitmap(uint64_t chunk) {
  auto found = bitmaps_.find(chunk);
  if (found != bitmaps_.end()) return &found->second;
  std::vector<uint8_t> bitmap(kSectorBitmapBlockSize, 0);
  const uint64_t entry = layout_.bat[bitmap_index(chunk)];
  if (state_of(entry) == kBitmapPresent) {
    TROY_TRY(file_->read_at(offset_of(entry), std::as_writable_bytes(std::span(bitmap))));
  } else {
    TROY_ASSIGN(at, allocate(kSectorBitmapBlockSize));
    set_entry(bitmap_index(chunk), make_entry(kBitmapPresent, at));
  }
  return &bitmaps_.emplace(chunk, std::move(bitmap)).first->second;
}

// Sets the present bits of a PARTIALLY_PRESENT block (LSB first) and notes
// the 4 KiB bitmap pages that changed.
Result<void> VhdxUpdater::mark_sectors(uint64_t block, uint64_t first, uint64_t count) {
  if (count == 0 || state_of(layout_.bat[payload_index(block)]) != kPartiallyPresent) return success();
  const uint64_t chunk = block / layout_.chunk_ratio;
  TROY_ASSIGN(bitmap, chunk_bitmap(chunk));
  const uint64_t from = (block % layout_.chunk_ratio) * sectors_per_block_ + first;
  for (uint64_t s = from; s < from + count; s++) (*bitmap)[s / 8] |= static_cast<uint8_t>(1u << (s % 8));
  constexpr uint64_t kSectorsPerPage = kLogSectorSize * 8;
  for (uint64_t page = from / kSectorsPerPage; page <= (from + count - 1) / kSectorsPerPage; page++)
    dirty_bitmap_pages_[chunk].insert(page);
  marked_blocks_.insert(block);
  return success();
}

// A PARTIALLY_PRESENT block whose every sector is now present becomes
// FULLY_PRESENT; checked once per commit rather than on every write.
void VhdxUpdater::promote_full_blocks() {
  for (const uint64_t block : marked_blocks_) {
    const uint64_t index = payload_index(block);
    if (state_of(layout_.bat[index]) != kPartiallyPresent) continue;
    const std::vector<uint8_t>& bitmap = bitmaps_.at(block / layout_.chunk_ratio);
    const uint64_t base = (block % layout_.chunk_ratio) * sectors_per_block_;
    uint64_t present = 0;
    for (uint64_t s = base; s < base + sectors_in(block); s++) present += (bitmap[s / 8] >> (s % 8)) & 1;
    if (present == sectors_in(block)) set_entry(index, make_entry(kFullyPresent, offset_of(layout_.bat[index])));
  }
  marked_blocks_.clear();
}

Result<void> VhdxUpdater::write(uint64_t offset, std::span<const std::byte> data) {
  TROY_TRY(check_range_of_disk(offset, data.size()));
  TROY_TRY(begin_changes(true));
  while (!data.empty()) {
    const uint64_t block = offset / layout_.block_size;
    const uint64_t within = offset % layout_.block_size;
    const size_t count = std::min<uint64_t>(data.size(), layout_.block_size - within);
    TROY_ASSIGN(at, writable_block(block));
    TROY_TRY(file_->write_at(at + within, data.first(count)));
    writeback_.note(at + within, count);
    data_unflushed_ = true;
    TROY_TRY(mark_sectors(block, within / layout_.logical_sector_size, count / layout_.logical_sector_size));
    offset += count;
    data = data.subspan(count);
  }
  return success();
}

Result<void> VhdxUpdater::write_zeros(uint64_t offset, uint64_t length) {
  TROY_TRY(check_range_of_disk(offset, length));
  TROY_TRY(begin_changes(true));
  const std::vector<std::byte> zeros(std::min<uint64_t>(length, layout_.block_size));
  while (length > 0) {
    const uint64_t block = offset / layout_.block_size;
    const uint64_t within = offset % layout_.block_size;
    const uint64_t count = std::min(length, layout_.block_size - within);
    const uint64_t index = payload_index(block);
    const uint64_t state = state_of(layout_.bat[index]);
    const bool allocated = state == kFullyPresent || state == kPartiallyPresent;
    const bool reads_zeros = state == kZero || state == kUnmapped || state == kUnmappedV095 ||
                             (!layout_.differencing && !allocated);
    if (within == 0 && count / layout_.logical_sector_size == sectors_in(block)) {
      if (allocated || (layout_.differencing && reads_parent_state(state))) set_entry(index, kZero);
    } else if (!reads_zeros) {
      TROY_TRY(write(offset, std::span(zeros).first(count)));
    }
    offset += count;
    length -= count;
  }
  return success();
}

// The 4 KiB pages of the BAT and of sector bitmaps that changed, with their
// new content.
std::vector<Page> VhdxUpdater::dirty_pages() const {
  std::vector<Page> pages;
  constexpr uint64_t kEntriesPerPage = kLogSectorSize / 8;
  for (const uint64_t page : dirty_bat_pages_) {
    std::vector<ul64> entries(kEntriesPerPage);
    const uint64_t first = page * kEntriesPerPage;
    for (uint64_t i = 0; i < kEntriesPerPage && first + i < layout_.bat.size(); i++) entries[i] = layout_.bat[first + i];
    const auto bytes = std::as_bytes(std::span(entries));
    pages.push_back({layout_.bat_offset + page * kLogSectorSize, {bytes.begin(), bytes.end()}});
  }
  for (const auto& [chunk, changed] : dirty_bitmap_pages_) {
    const std::vector<uint8_t>& bitmap = bitmaps_.at(chunk);
    const uint64_t bitmap_offset = offset_of(layout_.bat[bitmap_index(chunk)]);
    for (const uint64_t page : changed) {
      const auto bytes = std::as_bytes(std::span(bitmap).subspan(page * kLogSectorSize, kLogSectorSize));
      pages.push_back({bitmap_offset + page * kLogSectorSize, {bytes.begin(), bytes.end()}});
    }
  }
  return pages;
}

// Each batch of pages: a log entry at the head (wrapping to the log's start
// when it does not fit), flushed; then the pages in place, flushed. An entry
// is its own tail: everything before it is already applied.
Result<void> VhdxUpdater::log_and_apply(const std::vector<Page>& pages) {
  const uint64_t log_offset = layout_.header.log_offset;
  const uint64_t log_length = layout_.header.log_length;
  for (size_t first = 0; first < pages.size(); first += max_pages_) {
    const std::vector<Page> batch(pages.begin() + static_cast<ptrdiff_t>(first),
                                  pages.begin() + static_cast<ptrdiff_t>(std::min(pages.size(), first + max_pages_)));
    const uint64_t length = (1 + batch.size()) * kLogSectorSize;
    if (log_head_ + length > log_length) log_head_ = 0;
    const std::vector<std::byte> entry = make_log_entry(batch, ++log_sequence_, log_head_, log_guid_, file_->size());
    TROY_TRY(file_->write_at(log_offset + log_head_, entry));
    TROY_TRY(file_->flush());
    for (const Page& page : batch) TROY_TRY(file_->write_at(page.file_offset, page.bytes));
    TROY_TRY(file_->flush());
    log_head_ += length;
  }
  return success();
}

Result<void> VhdxUpdater::commit() {
  if (!changing_) return success();
  // The data the new metadata points at comes first (none written since the
  // last commit: no flush needed for it).
  if (data_unflushed_) {
    writeback_.forget();  // the flush writes it all
    TROY_TRY(file_->flush());
    data_unflushed_ = false;
  }
  promote_full_blocks();
  TROY_TRY(log_and_apply(dirty_pages()));
  dirty_bat_pages_.clear();
  dirty_bitmap_pages_.clear();
  return success();
}

// Clean close: every entry is applied, so the header gets an empty log and
// no reader needs to replay anything.
Result<void> VhdxUpdater::close() {
  TROY_TRY(commit());
  if (!changing_) return success();
  layout_.header.log_guid = Guid{};
  TROY_TRY(write_next_header(*file_, layout_.header, layout_.header_index));
  layout_.header.sequence_number = layout_.header.sequence_number + 1;
  changing_ = false;
  data_changing_ = false;
  return success();
}

// The parent locator item is rewritten through the log: where it is (a
// larger one goes after the last item of the metadata region), and its table
// entry.
Result<void> VhdxUpdater::set_parent(const ParentRecord& parent) {
  if (!layout_.differencing) return Error{fmt::format("{}: not a differencing image: it names no parent", file_->name())};
  TROY_TRY(commit());
  TROY_TRY(begin_changes(false));
  TROY_ASSIGN(region, read_metadata_region());
  const std::vector<MetadataTableEntry> entries = metadata_entries(region);
  TROY_ASSIGN(locator, find_item(entries, kParentLocatorItem));
  MetadataTableEntry entry = entries[locator];
  uint64_t items_end = kMetadataTableBytes;
  for (const MetadataTableEntry& other : entries)
    items_end = std::max<uint64_t>(items_end, uint64_t{other.offset} + other.length);
  const std::vector<std::byte> item = parent_locator_item(parent);
  const uint64_t at = item.size() <= entry.length ? uint64_t{entry.offset} : round_up(items_end, 8);
  if (at + item.size() > layout_.metadata_length)
    return Error{fmt::format("{}: metadata region ({} bytes) has no room for a parent locator of {} bytes",
                             file_->name(), layout_.metadata_length, item.size())};
  std::set<uint64_t> changed;
  auto note_pages = [&](uint64_t from, uint64_t length) { note_pages_of(changed, from, length); };
  note_pages(entry.offset, entry.length);
  std::memset(region.data() + entry.offset, 0, entry.length);
  std::memcpy(region.data() + at, item.data(), item.size());
  note_pages(at, item.size());
  entry.offset = static_cast<uint32_t>(at);
  entry.length = static_cast<uint32_t>(item.size());
  const uint64_t entry_at = sizeof(MetadataTableHeader) + locator * sizeof(MetadataTableEntry);
  std::memcpy(region.data() + entry_at, &entry, sizeof entry);
  note_pages(entry_at, sizeof entry);
  return log_and_apply(metadata_pages(region, changed));
}

// Adds or removes the kTroyMergeInProgressItem table entry (and its 8
// bytes, "troymrge"), through the log.
Result<void> VhdxUpdater::set_merge_in_progress(bool in_progress) {
  if (in_progress == layout_.merge_in_progress) return success();
  TROY_TRY(commit());
  TROY_TRY(begin_changes(false));
  TROY_ASSIGN(region, read_metadata_region());
  std::vector<MetadataTableEntry> entries = metadata_entries(region);
  std::set<uint64_t> changed;
  auto note_pages = [&](uint64_t from, uint64_t length) { note_pages_of(changed, from, length); };
  const uint64_t table_bytes_before = sizeof(MetadataTableHeader) + entries.size() * sizeof(MetadataTableEntry);
  if (in_progress) {
    uint64_t items_end = kMetadataTableBytes;
    for (const MetadataTableEntry& other : entries)
      items_end = std::max<uint64_t>(items_end, uint64_t{other.offset} + other.length);
    const uint64_t at = round_up(items_end, 8);
    if (at + 8 > layout_.metadata_length || table_bytes_before + sizeof(MetadataTableEntry) > kMetadataTableBytes)
      return Error{fmt::format("{}: metadata region has no room for the merge-in-progress item", file_->name())};
    MetadataTableEntry entry{};
    entry.item_id = kTroyMergeInProgressItem;
    entry.offset = static_cast<uint32_t>(at);
    entry.length = 8;
    entry.flags = kIsRequired;
    entries.push_back(entry);
    std::memcpy(region.data() + at, kMergeInProgressMark, 8);
    note_pages(at, 8);
  } else {
    TROY_ASSIGN(index, find_item(entries, kTroyMergeInProgressItem));
    std::memset(region.data() + entries[index].offset, 0, entries[index].length);
    note_pages(entries[index].offset, entries[index].length);
    entries.erase(entries.begin() + static_cast<ptrdiff_t>(index));
  }
  MetadataTableHeader header;
  std::memcpy(&header, region.data(), sizeof header);
  header.entry_count = static_cast<uint16_t>(entries.size());
  std::memcpy(region.data(), &header, sizeof header);
  std::memset(region.data() + sizeof header, 0, table_bytes_before + sizeof(MetadataTableEntry) - sizeof header);
  std::memcpy(region.data() + sizeof header, entries.data(), entries.size() * sizeof(MetadataTableEntry));
  note_pages(0, table_bytes_before + sizeof(MetadataTableEntry));
  TROY_TRY(log_and_apply(metadata_pages(region, changed)));
  layout_.merge_in_progress = in_progress;
  return success();
}

// The named 4 KiB pages of the metadata region, as `region` holds them.
std::vector<Page> VhdxUpdater::metadata_pages(const std::vector<std::byte>& region,
                                              const std::set<uint64_t>& pages) const {
  std::vector<Page> out;
  for (const uint64_t page : pages) {
    const auto bytes = std::span(region).subspan(page * kLogSectorSize, kLogSectorSize);
    out.push_back({layout_.metadata_offset + page * kLogSectorSize, {bytes.begin(), bytes.end()}});
  }
  return out;
}

Result<std::vector<std::byte>> VhdxUpdater::read_metadata_region() const {
  std::vector<std::byte> region(layout_.metadata_length);
  TROY_TRY(file_->read_at(layout_.metadata_offset, region));
  return region;
}

// The index of metadata item `id` in the table.
Result<size_t> VhdxUpdater::find_item(const std::vector<MetadataTableEntry>& entries, const Guid& id) const {
  for (size_t i = 0; i < entries.size(); i++)
    if (entries[i].item_id == id) return i;
  return Error{fmt::format("{}: metadata: the item {} is missing", file_->name(), guid_to_text(id))};
}

// A larger Virtual Disk Size item and BAT entries (zero: NOT_PRESENT) for
// the new blocks, both through the log. The BAT region must already be large
// enough; Hyper-V and troy round it up to 1 MiB, which usually leaves room.
Result<void> VhdxUpdater::can_grow(uint64_t virtual_size) const {
  if (virtual_size % layout_.logical_sector_size != 0)
    return Error{fmt::format("{}: cannot grow to {} bytes: not a multiple of the logical sector size {}",
                             file_->name(), virtual_size, layout_.logical_sector_size)};
  const uint64_t blocks = ceil_div(virtual_size, layout_.block_size);
  const uint64_t bat_entries = bat_entry_count(blocks, layout_.chunk_ratio, layout_.differencing);
  if (bat_entries * 8 > layout_.bat_length)
    return Error{fmt::format("{}: cannot grow to {} bytes: the BAT region ({} bytes) has no room for {} entries; "
                             "convert it to a new image of the larger size instead",
                             file_->name(), virtual_size, layout_.bat_length, bat_entries)};
  return success();
}

Result<void> VhdxUpdater::grow(uint64_t virtual_size) {
  if (virtual_size <= layout_.virtual_size) return success();
  TROY_TRY(can_grow(virtual_size));
  const uint64_t bat_entries =
      bat_entry_count(ceil_div(virtual_size, layout_.block_size), layout_.chunk_ratio, layout_.differencing);
  TROY_TRY(commit());
  TROY_TRY(begin_changes(true));
  for (uint64_t index = layout_.bat.size(); index < bat_entries; index++) {
    layout_.bat.push_back(kNotPresent);
    set_entry(index, kNotPresent);
  }
  TROY_ASSIGN(region, read_metadata_region());
  const std::vector<MetadataTableEntry> entries = metadata_entries(region);
  TROY_ASSIGN(index, find_item(entries, kVirtualDiskSizeItem));
  const MetadataTableEntry& entry = entries[index];
  if (entry.length < 8) return Error{fmt::format("{}: metadata: Virtual Disk Size item is too short", file_->name())};
  std::memcpy(region.data() + entry.offset, bytes_of(ul64{virtual_size}).data(), 8);
  const uint64_t page = entry.offset / kLogSectorSize;
  std::vector<Page> pages = dirty_pages();
  const auto bytes = std::span(region).subspan(page * kLogSectorSize, kLogSectorSize);
  pages.push_back({layout_.metadata_offset + page * kLogSectorSize, {bytes.begin(), bytes.end()}});
  TROY_TRY(log_and_apply(pages));
  dirty_bat_pages_.clear();
  dirty_bitmap_pages_.clear();
  layout_.virtual_size = virtual_size;
  return success();
}

}  // namespace

Result<std::unique_ptr<ImageUpdater>> open_for_update(std::unique_ptr<RandomAccessFile> file,
                                                     const UpdateOptions& update_options) {
  if (!probe(*file)) return Error{fmt::format("{}: not a VHDX file (no 'vhdxfile' identifier)", file->name())};
  TROY_TRY(replay_log_in_place(*file));
  Diagnostics diagnostics;
  OpenOptions options;
  options.diagnostics = &diagnostics;
  options.merge_in_progress_ok = true;  // the updater is what finishes the merge
  TROY_ASSIGN(layout, read_layout(std::make_unique<BorrowedSource>(*file), options));
  Guid data_write_guid = update_options.data_write_guid;
  if (data_write_guid == Guid{}) {
    TROY_ASSIGN(fresh, random_guid());
    data_write_guid = fresh;
  }
  return std::unique_ptr<ImageUpdater>(new VhdxUpdater(std::move(file), std::move(layout), data_write_guid));
}

}  // namespace troy::vhdx
