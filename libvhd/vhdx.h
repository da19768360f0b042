// The VHDX driver: dynamic, fixed and differencing (.avhdx) images behind
// Layer, the metadata log replayed in memory on open.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "io.h"
#include "layer.h"
#include "vhdx_format.h"

namespace troy {
struct ParentRecord;
}

namespace troy::vhdx {

// The parent locator metadata item that names `parent` as Hyper-V writes it
// (vhdx_writer.cpp): parent_linkage, relative_path, absolute_win32_path.
std::vector<std::byte> parent_locator_item(const ParentRecord& parent);

// True when the source starts with the "vhdxfile" file type identifier.
bool probe(const Source& source);

Result<std::unique_ptr<Layer>> open(std::unique_ptr<Source> source, const OpenOptions& options);

// What changing a file in place needs to know of it (vhdx_update.cpp).
struct FileLayout {
  Header header{};       // the current header
  int header_index = 0;  // its slot, 0 or 1
  uint64_t bat_offset = 0;
  uint64_t bat_length = 0;
  std::vector<uint64_t> bat;
  uint64_t block_size = 0;
  uint64_t chunk_ratio = 0;
  uint64_t virtual_size = 0;
  uint32_t logical_sector_size = 512;
  bool differencing = false;
  uint64_t metadata_offset = 0;  // the metadata region
  uint64_t metadata_length = 0;
  bool merge_in_progress = false;  // the kTroyMergeInProgressItem is present
};

// Opens and validates the file like open(), and returns its layout. The log
// must be clean (replay_log_in_place first).
Result<FileLayout> read_layout(std::unique_ptr<Source> source, const OpenOptions& options);

// Writes `header` with the next sequence number into the slot that is not
// current and flushes; `current_index` then names that slot.
Result<void> write_next_header(RandomAccessFile& file, Header header, int& current_index);

// What replay_log_in_place did.
struct InPlaceReplay {
  bool replayed = false;           // log entries were written into the file
  bool headers_rewritten = false;  // false: the log was clean and nothing was written
  uint32_t entries = 0;
  uint64_t writes = 0;
  uint64_t first_sequence = 0;
  uint64_t last_sequence = 0;
};

// Replays a dirty log into the file itself, as Hyper-V does on open: the
// entries' writes, the file extended to LastFileOffset, flushed; then both
// headers rewritten with a zero LogGuid and a new FileWriteGuid, flushed.
// Every command that opens a VHDX for writing calls this first. The
// DataWriteGuid is kept: replay restores data already committed, and a new
// one would break every child that names this file as its parent. A crash
// at any point leaves a file that replays again to the same bytes.
Result<InPlaceReplay> replay_log_in_place(const std::string& path);
// The same on a file already open for writing (and locked).
Result<InPlaceReplay> replay_log_in_place(RandomAccessFile& file);

// GUIDs as Windows prints them ("2dc27766-f623-4200-9d64-115e9bfd4a08"),
// converted to and from the mixed-endian bytes stored in the file.
std::string guid_to_text(const Guid& guid);
std::optional<Guid> guid_from_text(std::string_view text);  // braces optional

}  // namespace troy::vhdx
