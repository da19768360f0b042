// Helpers both format drivers use to describe where things are: in the file
// (intervals that must not overlap) and in the virtual disk (extents).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "layer.h"

namespace troy {

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

}  // namespace troy
