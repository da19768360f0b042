// Changing a VHD file in place. VHD has no log, so the writes are ordered so
// that the file is valid whatever subset of unflushed writes a power loss
// keeps (see docs/formats.md, "Changing a VHD in place"):
//   room for new blocks: a footer is written where the next few blocks will
//   end and flushed before anything overwrites the current footer, so the
//   file's last 512 bytes are a footer at every moment (a commit writes the
//   next one before its first flush when room runs short, so it costs no
//   flush of its own);
//   commit: the data is flushed, then the sector bitmaps that changed and
//   the BAT sectors that point at it are written, then flushed;
//   close: the footer is written right after the last block, flushed, and
//   the file cut there.
// A new block is not referenced before its data is on disk, and a bitmap bit
// is only ever set for data already on disk.
#include <algorithm>
#include <cstring>
#include <map>
#include <set>
#include <vector>

#include <fmt/format.h>

#include "layout.h"
#include "text.h"
#include "updater.h"
#include "vhd.h"
#include "vhd_format.h"
#include "writeback.h"
#include "writer.h"

namespace troy::vhd {
namespace {

// Growing a VHD means a new Current Size in both footers and usually a
// larger BAT, which does not fit where Hyper-V and troy put it.
Result<void> refuse_growth(const std::string& name, uint64_t size, uint64_t wanted) {
  if (wanted <= size) return success();
  return Error{fmt::format("{}: growing a VHD ({} to {} bytes) is not supported; convert it to a new image of the "
                           "larger size instead", name, size, wanted)};
}

Guid unique_id(const Footer& footer) {
  Guid id;
  std::memcpy(id.data(), footer.unique_id, id.size());
  return id;
}

constexpr uint64_t kUpdateDataAlignment = 4096;  // as vhd_writer.cpp lays blocks out

// Where the next block goes: right after the last structure the file
// references. Space past it up to the end footer holds nothing referenced:
// blocks a cut run wrote but never pointed the BAT at, reserved room. A
// re-run then places its blocks where the uninterrupted run placed them
// (the same bytes), instead of after the leaked ones.
uint64_t first_free(const FileLayout& layout) {
  return std::min(layout.footer_offset, round_up(layout.structures_end, kSectorSize));
}

// A fixed VHD is the disk itself: writes go in place, nothing else changes.
class FixedUpdater final : public ImageUpdater {
 public:
  FixedUpdater(std::unique_ptr<RandomAccessFile> file, FileLayout layout)
      : file_(std::move(file)), layout_(std::move(layout)) {}
  uint64_t virtual_size() const override { return layout_.footer.current_size; }
  uint32_t logical_sector_size() const override { return kSectorSize; }
  uint64_t block_size() const override { return 2 << 20; }
  uint64_t blocks_allocated() const override { return 0; }
  Guid link_id() const override { return unique_id(layout_.footer); }
  Result<void> grow(uint64_t size) override { return can_grow(size); }
  Result<void> can_grow(uint64_t size) const override { return refuse_growth(file_->name(), virtual_size(), size); }
  Result<void> set_merge_in_progress(bool) override { return success(); }
  Result<void> set_parent(const ParentRecord&) override {
    return Error{fmt::format("{}: a fixed image names no parent", file_->name())};
  }
  Result<void> write(uint64_t offset, std::span<const std::byte> data) override {
    TROY_TRY(writer_detail::check_range(file_->name(), virtual_size(), kSectorSize, offset, data.size()));
    return file_->write_at(offset, data);
  }
  Result<void> write_zeros(uint64_t offset, uint64_t length) override {
    TROY_TRY(writer_detail::check_range(file_->name(), virtual_size(), kSectorSize, offset, length));
    return write_zero_bytes(*file_, offset, length);
  }
  Result<void> commit() override { return file_->flush(); }
  Result<void> close() override { return commit(); }

 private:
  std::unique_ptr<RandomAccessFile> file_;
  FileLayout layout_;
};

class SparseUpdater final : public ImageUpdater {
 public:
  SparseUpdater(std::unique_ptr<RandomAccessFile> file, FileLayout layout, uint64_t blocks_expected)
      : file_(std::move(file)), layout_(std::move(layout)), end_(first_free(layout_)),
        footer_at_(layout_.footer_offset), blocks_expected_(blocks_expected),
        reserve_blocks_(std::clamp<uint64_t>(blocks_expected, 8, kMaxReservation)), writeback_(*file_) {}

  Result<void> repair_end_footer();
  uint64_t virtual_size() const override { return layout_.footer.current_size; }
  uint32_t logical_sector_size() const override { return kSectorSize; }
  uint64_t block_size() const override { return layout_.block_size; }
  uint64_t blocks_allocated() const override { return blocks_allocated_; }
  Guid link_id() const override { return unique_id(layout_.footer); }
  Result<void> grow(uint64_t size) override { return can_grow(size); }
  Result<void> can_grow(uint64_t size) const override { return refuse_growth(file_->name(), virtual_size(), size); }
  Result<void> set_parent(const ParentRecord& parent) override;
  Result<void> set_merge_in_progress(bool in_progress) override;
  Result<void> write(uint64_t offset, std::span<const std::byte> data) override;
  Result<void> write_zeros(uint64_t offset, uint64_t length) override;
  Result<void> commit() override;
  Result<void> close() override;

 private:
  bool differencing() const { return layout_.footer.disk_type == kDifferencing; }
  // Where a block allocated after `end` starts (its bitmap) and ends.
  uint64_t bitmap_after(uint64_t end) const {
    return round_up(end + layout_.bitmap_size, kUpdateDataAlignment) - layout_.bitmap_size;
  }
  uint64_t block_end_after(uint64_t end) const { return bitmap_after(end) + layout_.bitmap_size + layout_.block_size; }
  // Blocks are coming (being written, or announced) and the room is short.
  bool room_wanted() const {
    return (!bitmaps_.empty() || blocks_allocated_ < blocks_expected_) && block_end_after(end_) > footer_at_;
  }
  Result<void> reserve_room();
  Result<void> write_reservation();
  Result<uint64_t> allocate_space(uint64_t bytes);
  bool allocated(uint64_t block) const { return layout_.bat[block] != kUnallocated; }
  uint64_t bitmap_offset(uint64_t block) const { return uint64_t{layout_.bat[block]} * kSectorSize; }
  uint64_t data_offset(uint64_t block) const { return bitmap_offset(block) + layout_.bitmap_size; }
  void set_entry(uint64_t block, uint32_t value) {
    layout_.bat[block] = value;
    unflushed_ = true;
    dirty_bat_sectors_.insert(block * 4 / kSectorSize);
  }
  Result<void> allocate(uint64_t block);
  Result<void> mark_sectors(uint64_t block, uint64_t first, uint64_t count);

  std::unique_ptr<RandomAccessFile> file_;
  FileLayout layout_;
  uint64_t end_;           // end of the last block: the next one goes after it
  uint64_t footer_at_;     // the durable end footer; blocks fit below it
  static constexpr uint64_t kMaxReservation = 4096;
  uint64_t blocks_expected_;  // UpdateOptions::new_blocks_expected
  uint64_t reserve_blocks_;   // blocks the next reservation makes room for (doubles to 256, or as expected)
  bool unflushed_ = false;    // written since the last commit's flush
  uint64_t blocks_allocated_ = 0;
  std::set<uint64_t> dirty_bat_sectors_;
  struct Bitmap {
    std::vector<uint8_t> bits;
    bool changed = false;  // differs from the file's copy: written at the next commit
  };
  std::map<uint64_t, Bitmap> bitmaps_;  // blocks written since the last commit
  WritebackStretch writeback_;          // written data not yet handed to start_writeback
};

// An end footer that is missing or damaged (read from the copy at 0) is
// written again after the last structure before anything else changes.
Result<void> SparseUpdater::repair_end_footer() {
  if (layout_.end_footer_intact) return success();
  end_ = round_up(layout_.structures_end, kSectorSize);
  footer_at_ = end_;
  TROY_TRY(file_->write_at(end_, bytes_of(layout_.footer)));
  TROY_TRY(file_->set_size(end_ + kFooterSize));
  return file_->flush();
}

// Makes room for the next blocks: a footer where the next reserve_blocks_
// blocks will end, flushed before any of them overwrites the current one.
// Blocks are laid out by one formula, so that footer ends up in the gap
// before a later block (zeroed when the block is placed) or is where close()
// cuts the file; nothing in between is ever written but blocks.
Result<void> SparseUpdater::reserve_room() {
  TROY_TRY(write_reservation());
  return file_->flush();
}

// The footer of the next reservation, not yet flushed: durable only with the
// next flush, before which no block may overwrite the current footer.
Result<void> SparseUpdater::write_reservation() {
  uint64_t end = end_;
  for (uint64_t i = 0; i < reserve_blocks_; i++) end = block_end_after(end);
  TROY_TRY(file_->write_at(end, bytes_of(layout_.footer)));
  footer_at_ = end;
  unflushed_ = true;
  reserve_blocks_ = std::max<uint64_t>(reserve_blocks_, std::min<uint64_t>(reserve_blocks_ * 2, 256));
  return success();
}

// Room for something other than a block (a parent locator's path) after the
// last structure, below a durable footer.
Result<uint64_t> SparseUpdater::allocate_space(uint64_t bytes) {
  const uint64_t at = end_;
  const uint64_t end = at + round_up(bytes, kSectorSize);
  if (end > footer_at_) {
    TROY_TRY(file_->write_at(end, bytes_of(layout_.footer)));
    TROY_TRY(file_->flush());
    footer_at_ = end;
  }
  end_ = end;
  return at;
}

Result<void> SparseUpdater::allocate(uint64_t block) {
  if (block_end_after(end_) > footer_at_) TROY_TRY(reserve_room());
  const uint64_t bitmap_at = bitmap_after(end_);
  // A dynamic block holds every sector; a differencing one none until marked.
  // It is flushed with the data, before the BAT entry points at it. The gap
  // before the bitmap (under 4 KiB) may hold an older footer: a block must
  // read zeros wherever it is not written. Gap and bitmap are one write.
  const uint64_t gap = bitmap_at - end_;
  std::vector<uint8_t> head(gap + layout_.bitmap_size, 0x00);
  std::vector<uint8_t> bitmap(layout_.bitmap_size, differencing() ? 0x00 : 0xFF);
  std::copy(bitmap.begin(), bitmap.end(), head.begin() + static_cast<std::ptrdiff_t>(gap));
  TROY_TRY(file_->write_at(end_, std::as_bytes(std::span(head))));
  // That page goes to the disk with the block's data, not alone (a random
  // write per new block) at the commit's flush.
  writeback_.note(end_, head.size());
  bitmaps_[block] = Bitmap{std::move(bitmap), false};
  set_entry(block, static_cast<uint32_t>(bitmap_at / kSectorSize));
  end_ = bitmap_at + layout_.bitmap_size + layout_.block_size;
  blocks_allocated_++;
  return success();
}

// Sets a block's bits (most significant bit first), reading its bitmap from
// the file the first time. Dynamic blocks too: readers that follow the spec
// (libvhdi) read a clear bit as a sector never written, whatever the block
// holds, and other writers (vhd-lib) allocate dynamic blocks with clear bits.
// A bitmap whose bits were all set already is not written again (the usual
// case for a dynamic target: troy, Hyper-V and qemu set them all).
Result<void> SparseUpdater::mark_sectors(uint64_t block, uint64_t first, uint64_t count) {
  auto found = bitmaps_.find(block);
  if (found == bitmaps_.end()) {
    std::vector<uint8_t> bits(layout_.bitmap_size);
    TROY_TRY(file_->read_at(bitmap_offset(block), std::as_writable_bytes(std::span(bits))));
    found = bitmaps_.emplace(block, Bitmap{std::move(bits), false}).first;
  }
  Bitmap& bitmap = found->second;
  for (uint64_t s = first; s < first + count; s++) {
    uint8_t& byte = bitmap.bits[s / 8];
    const auto bit = static_cast<uint8_t>(0x80 >> (s % 8));
    if ((byte & bit) == 0) {
      byte |= bit;
      bitmap.changed = true;
    }
  }
  return success();
}

Result<void> SparseUpdater::write(uint64_t offset, std::span<const std::byte> data) {
  TROY_TRY(writer_detail::check_range(file_->name(), virtual_size(), kSectorSize, offset, data.size()));
  while (!data.empty()) {
    const uint64_t block = offset / layout_.block_size;
    const uint64_t within = offset % layout_.block_size;
    const size_t count = std::min<uint64_t>(data.size(), layout_.block_size - within);
    if (!allocated(block)) TROY_TRY(allocate(block));
    TROY_TRY(file_->write_at(data_offset(block) + within, data.first(count)));
    unflushed_ = true;
    writeback_.note(data_offset(block) + within, count);
    TROY_TRY(mark_sectors(block, within / kSectorSize, count / kSectorSize));
    offset += count;
    data = data.subspan(count);
  }
  return success();
}

// VHD has no zero state: a differencing image stores zeros as data; a
// dynamic one frees whole blocks (unallocated reads zeros) and writes zeros
// into the blocks it keeps.
Result<void> SparseUpdater::write_zeros(uint64_t offset, uint64_t length) {
  TROY_TRY(writer_detail::check_range(file_->name(), virtual_size(), kSectorSize, offset, length));
  const std::vector<std::byte> zeros(std::min<uint64_t>(length, layout_.block_size));
  while (length > 0) {
    const uint64_t block = offset / layout_.block_size;
    const uint64_t within = offset % layout_.block_size;
    const uint64_t count = std::min(length, layout_.block_size - within);
    const bool whole = within == 0 && (count == layout_.block_size || offset + count == virtual_size());
    if (differencing()) TROY_TRY(write(offset, std::span(zeros).first(count)));
    else if (whole && allocated(block)) set_entry(block, kUnallocated);
    else if (allocated(block)) TROY_TRY(write(offset, std::span(zeros).first(count)));
    offset += count;
    length -= count;
  }
  return success();
}

Result<void> SparseUpdater::commit() {
  // Nothing written since the last commit: nothing to flush or point at.
  if (!unflushed_ && bitmaps_.empty()) return success();
  // Room for the next blocks rides on this commit's first flush when the
  // reserved room runs short; a reservation never used is cut by close().
  if (room_wanted()) TROY_TRY(write_reservation());
  writeback_.forget();  // the flush writes it all
  TROY_TRY(file_->flush());  // data first: nothing may point at unwritten data
  for (const auto& [block, bitmap] : bitmaps_)
    if (bitmap.changed && allocated(block))  // a dynamic block freed since by write_zeros has no bitmap any more
      TROY_TRY(file_->write_at(bitmap_offset(block), std::as_bytes(std::span(bitmap.bits))));
  bitmaps_.clear();
  const uint64_t table = layout_.header.table_offset;
  for (const uint64_t sector : dirty_bat_sectors_) {
    std::vector<ub32> entries(kSectorSize / 4, ub32{kUnallocated});
    for (uint64_t i = 0; i < entries.size() && sector * entries.size() + i < layout_.bat.size(); i++)
      entries[i] = layout_.bat[sector * entries.size() + i];
    TROY_TRY(file_->write_at(table + sector * kSectorSize, std::as_bytes(std::span(entries))));
  }
  dirty_bat_sectors_.clear();
  TROY_TRY(file_->flush());
  unflushed_ = false;
  return success();
}

// New parent fields and locators (W2ku and W2ru, as Windows writes them).
// A path goes into its locator's old space when it fits, else after the last
// structure; the paths are flushed before the header that points at them.
// The header is one 1024-byte write inside one 4 KiB page: a write torn
// there fails the header checksum (never a wrong parent), and opening with
// UpdateOptions::repair_header lets the same set_parent write it again.
Result<void> SparseUpdater::set_parent(const ParentRecord& parent) {
  if (!differencing()) return Error{fmt::format("{}: not a differencing image: it names no parent", file_->name())};
  TROY_TRY(commit());
  DynamicHeader header = layout_.header;
  std::memcpy(header.parent_unique_id, parent.link_id.data(), parent.link_id.size());
  header.parent_timestamp = vhd_timestamp(parent.modified_unix);
  const std::string name = parent.relative_path.substr(parent.relative_path.find_last_of('/') + 1);
  const std::vector<std::byte> unicode_name = utf8_to_utf16(name, true);
  std::memset(header.parent_unicode_name, 0, sizeof header.parent_unicode_name);
  std::memcpy(header.parent_unicode_name, unicode_name.data(),
              std::min(unicode_name.size(), sizeof header.parent_unicode_name));
  const std::pair<uint32_t, std::vector<std::byte>> paths[] = {
      {kW2ku, utf8_to_utf16(writer_detail::windows_path(parent.absolute_path), false)},
      {kW2ru, utf8_to_utf16(writer_detail::windows_relative_path(parent.relative_path), false)},
  };
  ParentLocatorEntry entries[8]{};
  for (size_t i = 0; i < std::size(paths); i++) {
    const auto& [code, payload] = paths[i];
    const uint64_t space = round_up(std::max<uint64_t>(payload.size(), 1), kSectorSize);
    ParentLocatorEntry& entry = entries[i];
    entry.platform_code = code;
    entry.platform_data_length = static_cast<uint32_t>(payload.size());
    for (const ParentLocatorEntry& old : layout_.header.parent_locators)
      if (old.platform_code == code && locator_space_bytes(old.platform_data_space) >= space) {
        entry.platform_data_offset = old.platform_data_offset;
        entry.platform_data_space = old.platform_data_space;
      }
    if (entry.platform_data_offset == 0) {
      TROY_ASSIGN(at, allocate_space(space));
      entry.platform_data_offset = at;
      entry.platform_data_space = static_cast<uint32_t>(space);
    }
    TROY_TRY(write_zero_bytes(*file_, entry.platform_data_offset, locator_space_bytes(entry.platform_data_space)));
    TROY_TRY(file_->write_at(entry.platform_data_offset, payload));
  }
  std::memcpy(header.parent_locators, entries, sizeof entries);
  header.checksum = checksum(bytes_of(header), kHeaderChecksumOffset);
  TROY_TRY(file_->flush());
  TROY_TRY(file_->write_at(layout_.footer.data_offset, bytes_of(header)));
  TROY_TRY(file_->flush());
  layout_.header = header;
  return success();
}

// Only the cookie and the checksum change, both in the header's first
// sector: one 512-byte write, which a disk does not tear.
Result<void> SparseUpdater::set_merge_in_progress(bool in_progress) {
  const char* cookie = in_progress ? kMergeInProgressCookie : kHeaderCookie;
  if (std::memcmp(layout_.header.cookie, cookie, 8) == 0) return success();
  TROY_TRY(commit());
  // The room for the blocks announced rides on this flush (a merge sets the
  // mark before its first write): no flush of its own.
  if (in_progress && room_wanted()) TROY_TRY(write_reservation());
  std::memcpy(layout_.header.cookie, cookie, 8);
  layout_.header.checksum = checksum(bytes_of(layout_.header), kHeaderChecksumOffset);
  TROY_TRY(file_->write_at(layout_.footer.data_offset, bytes_of(layout_.header).first(kSectorSize)));
  return file_->flush();
}

// The footer moves to right after the last block and the file is cut there;
// until the cut is durable, the reserved footer still ends the file.
Result<void> SparseUpdater::close() {
  TROY_TRY(commit());
  if (footer_at_ == end_) return success();
  TROY_TRY(file_->write_at(end_, bytes_of(layout_.footer)));
  TROY_TRY(file_->flush());
  TROY_TRY(file_->set_size(end_ + kFooterSize));
  TROY_TRY(file_->flush());
  footer_at_ = end_;
  return success();
}

}  // namespace

Result<std::unique_ptr<ImageUpdater>> open_for_update(std::unique_ptr<RandomAccessFile> file,
                                                     const UpdateOptions& update_options) {
  Diagnostics diagnostics;
  OpenOptions options;
  options.diagnostics = &diagnostics;
  options.ignore_checksums = update_options.repair_header;
  options.merge_in_progress_ok = true;  // the updater is what finishes the merge
  TROY_ASSIGN(layout, read_layout(std::make_unique<BorrowedSource>(*file), options));
  if (layout.footer.disk_type == kFixed)
    return std::unique_ptr<ImageUpdater>(new FixedUpdater(std::move(file), std::move(layout)));
  auto updater = std::make_unique<SparseUpdater>(std::move(file), std::move(layout), update_options.new_blocks_expected);
  TROY_TRY(updater->repair_end_footer());
  return std::unique_ptr<ImageUpdater>(std::move(updater));
}

Result<void> set_unique_id(RandomAccessFile& file, const Guid& id) {
  Diagnostics diagnostics;
  OpenOptions options;
  options.diagnostics = &diagnostics;
  TROY_ASSIGN(layout, read_layout(std::make_unique<BorrowedSource>(file), options));
  if (!layout.end_footer_intact)
    return Error{fmt::format("{}: the footer at the end of the file is damaged; it must be repaired (troy merge or "
                             "an update rewrites it) before the image takes a new id", file.name())};
  Footer footer = layout.footer;
  std::memcpy(footer.unique_id, id.data(), id.size());
  footer.checksum = checksum(bytes_of(footer), kFooterChecksumOffset);
  // The end footer first: readers take it, so the id changes at one write.
  std::vector<uint64_t> places = {layout.footer_offset};
  if (footer.disk_type != kFixed) places.push_back(0);  // the copy a fixed VHD does not have
  for (const uint64_t at : places) {
    Footer now{};
    if (at + kFooterSize <= file.size())
      TROY_TRY(file.read_at(at, std::as_writable_bytes(std::span(&now, 1))));
    if (std::memcmp(&now, &footer, kFooterSize) == 0) continue;
    TROY_TRY(file.write_at(at, bytes_of(footer)));
    TROY_TRY(file.flush());
  }
  return success();
}

}  // namespace troy::vhd

namespace troy {

Result<void> set_vhd_unique_id(const std::string& path, const Guid& id) {
  TROY_ASSIGN(file, WritableFile::open(path));
  if (!vhd::probe(*file)) return Error{fmt::format("{}: not a VHD file (no 'conectix' footer)", path)};
  return vhd::set_unique_id(*file, id);
}

}  // namespace troy
