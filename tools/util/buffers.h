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

// MemAvailable of /proc/meminfo in bytes; 0 where it cannot be read.
uint64_t available_memory();

// How many buffers of `each` bytes to keep in flight: `wanted`, or fewer
// when they would take more than 1/16 of `available` memory (a boot payload
// on a small machine: its RAM also holds the kernel, the initramfs and the
// page cache), but never fewer than 2. `available` 0 (unknown): `wanted`.
size_t buffers_for_memory(size_t wanted, size_t each, uint64_t available);

// "12.0 MiB/s" from bytes and seconds.
std::string rate(uint64_t bytes, double seconds);

}  // namespace troy::cli
