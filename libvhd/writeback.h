// Starting writeback of data an updater wrote, one stretch at a time.
// sync_file_range per write would put the same page-cache folio under
// writeback again and again when many small runs land in one block (each
// call waits for the folio's previous writeback); one call per stretch of
// nearby writes sends them to the disk as few large requests. Shared by the
// VHD and VHDX updaters (vhd_update.cpp, vhdx_update.cpp). Advisory only:
// durability still comes from RandomAccessFile::flush().
#pragma once

#include <algorithm>
#include <cstdint>

#include "io.h"

namespace troy {

class WritebackStretch {
 public:
  explicit WritebackStretch(RandomAccessFile& file) : file_(file) {}

  // Notes a write; starts writeback of the stretch collected so far once a
  // write lands away from it (more than kNear past its end, before its
  // start) or the stretch would pass kStretch.
  void note(uint64_t offset, uint64_t length) {
    const bool extends = to_ > from_ && offset >= from_ && offset <= to_ + kNear && offset + length - from_ <= kStretch;
    if (extends) {
      to_ = std::max(to_, offset + length);
      return;
    }
    start();
    from_ = offset;
    to_ = offset + length;
  }
  // Starts writeback of what is collected (before a long pause in writing).
  void start() {
    if (to_ > from_) file_.start_writeback(from_, to_ - from_);
    from_ = to_ = 0;
  }
  // A flush writes everything: nothing collected is left to start.
  void forget() { from_ = to_ = 0; }

 private:
  static constexpr uint64_t kNear = 1 << 20, kStretch = 8 << 20;
  RandomAccessFile& file_;
  uint64_t from_ = 0, to_ = 0;
};

}  // namespace troy
