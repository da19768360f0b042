// The VHD driver: fixed, dynamic and differencing images behind Layer.
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "io.h"
#include "layer.h"
#include "vhd_format.h"

namespace troy::vhd {

// True when the source looks like a VHD (a footer cookie at the end or at 0).
bool probe(const Source& source);

Result<std::unique_ptr<Layer>> open(std::unique_ptr<Source> source, const OpenOptions& options);

// What changing a file in place needs to know of it (vhd_update.cpp).
struct FileLayout {
  Footer footer{};
  DynamicHeader header{};      // dynamic and differencing only
  std::vector<uint32_t> bat;   // sector of each block's bitmap, or kUnallocated
  uint64_t block_size = 0;
  uint64_t bitmap_size = 0;
  bool end_footer_intact = true;  // false: read from the copy at offset 0
  uint64_t footer_offset = 0;     // where the end footer starts (file size - its length)
  uint64_t structures_end = 0;    // end of the header, BAT, locators and blocks
};

// Opens and validates the file like open(), and returns its layout.
Result<FileLayout> read_layout(std::unique_ptr<Source> source, const OpenOptions& options);

// The VHD checksum: ones' complement of the byte sum, with the checksum
// field's own bytes counted as zero.
uint32_t checksum(std::span<const std::byte> structure, size_t checksum_offset);

}  // namespace troy::vhd
