// Long lists of problems or warnings shortened for people. A damaged table
// gives one line per entry (a 266 KB VHD with a bad BAT gave 65,024 lines):
// after the first few of a kind, the rest are counted, not printed.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace troy::cli {

struct LineSummary {
  std::vector<std::string> shown;     // the lines kept, in their order
  std::vector<std::string> omitted;   // "... and 65004 more like: LINE", one per kind cut short
  size_t total = 0;                   // every line, shown or not
  size_t omitted_count() const { return total - shown.size(); }
};

// Keeps the first `per_kind` lines of each kind and at most `max_shown` in
// all. Two lines are of one kind when they differ only in words holding
// digits (entry numbers, offsets, ids): "BAT entry 7 points past the end"
// and "BAT entry 8 points past the end".
LineSummary summarize_lines(const std::vector<std::string>& lines, size_t per_kind = 20, size_t max_shown = 200);

// The line without its numbers: what summarize_lines groups by.
std::string line_kind(const std::string& line);

}  // namespace troy::cli
