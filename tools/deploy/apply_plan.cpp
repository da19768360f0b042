#include "apply_plan.h"

#include <algorithm>

#include <fmt/format.h>

#include "chain_map.h"
#include "buffers.h"

namespace troy::cli {

std::vector<ByteRange> split_on_grid(const std::vector<ByteRange>& ranges) {
  std::vector<ByteRange> pieces;
  for (const ByteRange& range : ranges)
    for (uint64_t at = range.offset; at < range.end();) {
      const uint64_t next = std::min(range.end(), (at / kPieceGrid + 1) * kPieceGrid);
      pieces.push_back({at, next - at});
      at = next;
    }
  return pieces;
}

std::vector<ByteRange> subtract(const std::vector<ByteRange>& ranges, std::vector<ByteRange> excluded) {
  std::sort(excluded.begin(), excluded.end(), [](const ByteRange& a, const ByteRange& b) { return a.offset < b.offset; });
  std::vector<ByteRange> sorted = ranges;
  std::sort(sorted.begin(), sorted.end(), [](const ByteRange& a, const ByteRange& b) { return a.offset < b.offset; });
  std::vector<ByteRange> kept;
  for (const ByteRange& range : sorted) {
    uint64_t at = range.offset;
    for (const ByteRange& cut : excluded) {
      if (cut.end() <= at || cut.length == 0) continue;
      if (cut.offset >= range.end()) break;
      if (cut.offset > at) kept.push_back({at, cut.offset - at});
      at = std::max(at, cut.end());
    }
    if (at < range.end()) kept.push_back({at, range.end() - at});
  }
  return kept;
}

Result<std::vector<ByteRange>> delta_ranges(const Chain& chain, size_t levels) {
  TROY_ASSIGN(extents, held_by_top_layers(chain, levels, 0, chain.virtual_size()));
  std::vector<ByteRange> ranges;
  for (const Extent& extent : extents) ranges.push_back({extent.offset, extent.length});
  return ranges;
}

Result<ByteRange> parse_exclude(const std::string& text, uint32_t sector) {
  const size_t colon = text.find(':');
  if (colon == std::string::npos)
    return Error{fmt::format("--exclude '{}': expected OFFSET:LENGTH, e.g. 20G:10G or 1048576:4096", text)};
  TROY_ASSIGN(offset, parse_size(text.substr(0, colon), "--exclude offset"));
  TROY_ASSIGN(length, parse_size(text.substr(colon + 1), "--exclude length"));
  if (offset % sector != 0 || length % sector != 0)
    return Error{fmt::format("--exclude '{}': offset and length must be whole {}-byte sectors", text, sector)};
  if (length == 0 || offset + length < offset) return Error{fmt::format("--exclude '{}': an empty or impossible range", text)};
  return ByteRange{offset, length};
}

Result<ByteRange> partition_range(const PartitionTable& table, unsigned number, const std::string& image) {
  std::string there;
  for (const Partition& partition : table.partitions) {
    if (partition.number == number) return ByteRange{partition.offset, partition.length};
    there += fmt::format("{}{}", there.empty() ? "" : ", ", partition.number);
  }
  if (table.partitions.empty())
    return Error{fmt::format("--keep-partition {}: {} has no partition table ({})", number, image, table.scheme)};
  return Error{fmt::format("--keep-partition {}: {}'s {} partition table has no partition {} (it has {})", number,
                           image, table.scheme, number, there)};
}

}  // namespace troy::cli
