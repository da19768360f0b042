// Changing an existing image in place: sectors written into a dynamic or
// differencing layer, blocks allocated, bitmaps and block tables updated.
// Merge writes into its target through this interface. Each format's
// updater lives in its driver's files (vhd_update.cpp, vhdx_update.cpp).
//
// Crash safety is the updater's job: data reaches the file first and is
// flushed; only then does commit() make the metadata point at it (VHDX
// through the log, VHD in an order where every prefix is a valid file).
// Killed at any moment, the file opens as a valid image that holds, for each
// range, either what it held before or what was written; writing the same
// bytes again completes the job.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "io.h"
#include "layer.h"
#include "result.h"

namespace troy {

struct ParentRecord;

struct UpdateOptions {
  // VHDX: the DataWriteGuid the first data change gives the file (merge
  // chooses it first, so an undo image can name the merged parent before
  // the merge starts); zero for a random one.
  Guid data_write_guid{};
  // VHD: accept a dynamic header whose checksum fails, as a crash during
  // set_parent can leave it (its layout fields are the same either way).
  bool repair_header = false;
  // VHD: how many blocks the caller expects to allocate (merge counts them
  // from the metadata first; an estimate). Room for them is reserved once,
  // riding on a flush the merge makes anyway, instead of in doublings that
  // each cost a flush (an fsync in the middle of the writing, waiting for
  // everything written before it).
  uint64_t new_blocks_expected = 0;
};

class ImageUpdater {
 public:
  virtual ~ImageUpdater() = default;

  virtual uint64_t virtual_size() const = 0;
  virtual uint32_t logical_sector_size() const = 0;
  virtual uint64_t block_size() const = 0;

  // Stores whole logical sectors at `offset`. Sectors in blocks the file
  // already holds change at once; newly allocated space becomes part of the
  // disk at the next commit().
  virtual Result<void> write(uint64_t offset, std::span<const std::byte> data) = 0;

  // Makes whole logical sectors read as zeros, also over a parent: whole
  // blocks become ZERO (VHDX) or unallocated (VHD base), the rest are written.
  virtual Result<void> write_zeros(uint64_t offset, uint64_t length) = 0;

  // Flushes the data written so far, then commits the metadata that makes it
  // visible, and flushes again.
  virtual Result<void> commit() = 0;

  // commit(), then marks the file as cleanly closed (VHDX: an empty log).
  virtual Result<void> close() = 0;

  // The id a child records to name this image once the changes are made:
  // VHD UniqueId (never changes), VHDX the DataWriteGuid the first data
  // change sets.
  virtual Guid link_id() const = 0;

  // Makes a differencing image name another parent (its id, paths and, for
  // VHD, name and time stamp). The image's data does not change, so its own
  // children still verify against it. Takes effect at once, crash-safe.
  virtual Result<void> set_parent(const ParentRecord& parent) = 0;

  // Makes the virtual disk `virtual_size` bytes long (never shorter), as
  // Hyper-V expands a disk; the new part reads zeros (over a parent: the
  // parent, which reads zeros past its own end). VHDX only, and only where
  // the BAT region has room for the entries; crash-safe through the log.
  virtual Result<void> grow(uint64_t virtual_size) = 0;
  // Whether grow(virtual_size) would succeed, changing nothing.
  virtual Result<void> can_grow(uint64_t virtual_size) const = 0;

  // Marks the file as half-changed, so that readers refuse it until the
  // mark is cleared: a merge spans many commits and must never be shown
  // half done. VHDX: a metadata item marked required, which [MS-VHDX] makes
  // every reader that does not know it refuse. VHD: the dynamic header's
  // cookie. A fixed VHD has no place for a mark (only the merge journal
  // tells). Clearing commits first, so the mark goes only after the data.
  virtual Result<void> set_merge_in_progress(bool in_progress) = 0;

  // Counts for reports.
  virtual uint64_t blocks_allocated() const = 0;
};

// Opens an image file for changing, under an exclusive lock. A VHDX whose
// log is dirty is replayed first, as Hyper-V does. The first change gives a
// VHDX new FileWriteGuid and DataWriteGuid, as [MS-VHDX] requires: children
// of this file then no longer verify against it.
Result<std::unique_ptr<ImageUpdater>> open_for_update(const std::string& path, const UpdateOptions& options = {});
// vhd::set_unique_id on a file by its path.
Result<void> set_vhd_unique_id(const std::string& path, const Guid& id);

// Each driver's, on an already opened file (tests put a power-loss
// simulator here).
namespace vhd {
Result<std::unique_ptr<ImageUpdater>> open_for_update(std::unique_ptr<RandomAccessFile> file,
                                                     const UpdateOptions& options = {});
// Gives a VHD another footer Unique Id, the id its children record to name
// it. Merging into a VHD keeps its id (VHD has no DataWriteGuid), so a lab
// that merges each delta into its own base gives the base the merged delta's
// id afterwards, so that the next delta's parent id names it. Crash-safe:
// the end footer (the one readers take) is written and flushed first, then
// the copy at offset 0; each is one 512-byte write with its own checksum.
// A cut between them leaves the new id readable and the copy stale; running
// it again writes only the footers that differ (nothing when both hold it).
// The image must not be marked half-merged and its end footer must be
// intact (an updater repairs it first).
Result<void> set_unique_id(RandomAccessFile& file, const Guid& id);
}
namespace vhdx {
Result<std::unique_ptr<ImageUpdater>> open_for_update(std::unique_ptr<RandomAccessFile> file,
                                                     const UpdateOptions& options = {});
}

}  // namespace troy
