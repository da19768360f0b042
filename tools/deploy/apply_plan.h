// What `troy apply` and `troy fingerprint` write where: the ranges of the
// disk to bring to the image's content, cut into pieces on a fixed grid so
// that a fingerprint made on one machine names the same pieces that apply
// checks on another.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "chain.h"
#include "partitions.h"
#include "result.h"

namespace troy::cli {

// Pieces never cross a multiple of this: the unit of base verification, of
// fingerprint hashes and of resuming.
constexpr uint64_t kPieceGrid = 1 << 20;

struct ByteRange {
  uint64_t offset = 0;
  uint64_t length = 0;
  uint64_t end() const { return offset + length; }
};

// Ranges cut at every multiple of kPieceGrid.
std::vector<ByteRange> split_on_grid(const std::vector<ByteRange>& ranges);

// `ranges` without any byte of `excluded` (both in any order; the result in
// offset order).
std::vector<ByteRange> subtract(const std::vector<ByteRange>& ranges, std::vector<ByteRange> excluded);

// The top `levels` layers' extents as ranges (the delta, or everything above
// an ancestor).
Result<std::vector<ByteRange>> delta_ranges(const Chain& chain, size_t levels);

// --exclude OFFSET:LENGTH, sizes with units (1G:512M); whole `sector`s.
Result<ByteRange> parse_exclude(const std::string& text, uint32_t sector);

// The bytes of partition `number` in `table`, or an error listing the ones there are.
Result<ByteRange> partition_range(const PartitionTable& table, unsigned number, const std::string& image);

}  // namespace troy::cli
