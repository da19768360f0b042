// Helpers both format drivers use to describe where things are: in the file
// (intervals that must not overlap) and in the virtual disk (extents).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "layer.h"

namespace troy {

inline uint64_t ceil_div(uint64_t value, uint64_t divisor) { return (value + divisor - 1) / divisor; }
inline uint64_t round_up(uint64_t value, uint64_t multiple) { return ceil_div(value, multiple) * multiple; }

// True when [offset, offset + length) lies inside a file of `size` bytes,
// written so that no sum can overflow.
inline bool inside_file(uint64_t size, uint64_t offset, uint64_t length) {
  return offset <= size && length <= size - offset;
}

// A range of the image file that one structure occupies.
struct Interval {
  uint64_t start;
  uint64_t end;
  std::string what;  // "BAT", "block 7", ...
};

// Reports, through diagnostics.problem, every interval that starts before
// the furthest end seen so far: "WHERE: X at 0x.. overlaps Y at 0x..".
Result<void> report_overlaps(std::vector<Interval> used, const std::string& where, Diagnostics& diagnostics);

// Appends [from, to) to `out`, extending the last extent when it is of the
// same kind and ends where this one starts.
void append_extent(std::vector<Extent>& out, uint64_t from, uint64_t to, ExtentKind kind);

// The sectors of one block that a sector bitmap covers, and the part of the
// virtual disk [from, to) a caller asks about.
struct BitmapWindow {
  uint64_t block_start;  // virtual offset of the block's first sector
  uint64_t sector_size;
  uint64_t from;
  uint64_t to;
};

// Appends, as Data extents clipped to [from, to), the runs of sectors whose
// bitmap bit is set; `is_set(s)` answers for sector s of the block. Both
// formats use it: only their bit order differs.
template <typename IsSet>
void append_set_runs(const BitmapWindow& window, IsSet is_set, std::vector<Extent>& out) {
  const uint64_t end_sector = (window.to - window.block_start + window.sector_size - 1) / window.sector_size;
  for (uint64_t s = (window.from - window.block_start) / window.sector_size; s < end_sector;) {
    if (!is_set(s)) {
      s++;
      continue;
    }
    const uint64_t run = s;
    while (s < end_sector && is_set(s)) s++;
    const uint64_t start = window.block_start + run * window.sector_size;
    const uint64_t end = window.block_start + s * window.sector_size;
    append_extent(out, start < window.from ? window.from : start, end > window.to ? window.to : end, ExtentKind::Data);
  }
}

}  // namespace troy
