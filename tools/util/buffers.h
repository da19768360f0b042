// Small helpers of every floor above libvhd: buffers for direct I/O, sizes
// as an admin types them, rates as the summaries print them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "result.h"

namespace troy::cli {

// "40G", "512M", "1T", "1536" (bytes); binary units, an optional "iB"/"B".
Result<uint64_t> parse_size(const std::string& text, const std::string& option);

// A buffer aligned for direct I/O.
struct AlignedBuffer {
  explicit AlignedBuffer(size_t size);
  ~AlignedBuffer();
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  std::span<std::byte> span() { return {data, size}; }
  std::byte* data;
  size_t size;
};

// "12.0 MiB/s" from bytes and seconds.
std::string rate(uint64_t bytes, double seconds);

}  // namespace troy::cli
