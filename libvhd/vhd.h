// The VHD driver: fixed, dynamic and differencing images behind Layer.
#pragma once

#include <memory>
#include <span>

#include "io.h"
#include "layer.h"

namespace troy::vhd {

// True when the source looks like a VHD (a footer cookie at the end or at 0).
bool probe(const Source& source);

Result<std::unique_ptr<Layer>> open(std::unique_ptr<Source> source, const OpenOptions& options);

// The VHD checksum: ones' complement of the byte sum, with the checksum
// field's own bytes counted as zero.
uint32_t checksum(std::span<const std::byte> structure, size_t checksum_offset);

}  // namespace troy::vhd
