#include "layout.h"

#include <algorithm>

#include <fmt/format.h>

namespace troy {

Result<void> report_overlaps(std::vector<Interval> used, const std::string& where, Diagnostics& diagnostics) {
  std::sort(used.begin(), used.end(), [](const Interval& a, const Interval& b) { return a.start < b.start; });
  const Interval* furthest = nullptr;
  for (const Interval& interval : used) {
    if (furthest && interval.start < furthest->end)
      TROY_TRY(diagnostics.problem(fmt::format("{}: {} at {:#x} overlaps {} at {:#x}", where, interval.what,
                                               interval.start, furthest->what, furthest->start)));
    if (!furthest || interval.end > furthest->end) furthest = &interval;
  }
  return success();
}

void append_extent(std::vector<Extent>& out, uint64_t from, uint64_t to, ExtentKind kind) {
  if (!out.empty() && out.back().end() == from && out.back().kind == kind) out.back().length += to - from;
  else out.push_back({from, to - from, kind});
}

}  // namespace troy
