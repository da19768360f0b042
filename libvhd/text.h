// Small text helpers shared by the drivers and the CLI.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace troy {

// Decodes UTF-16 (either byte order) to UTF-8. Stops at the first NUL code
// unit. Unpaired surrogates, which occur in real files, become U+FFFD.
std::string utf16_to_utf8(std::span<const std::byte> bytes, bool big_endian);

// Encodes UTF-8 as UTF-16 in the given byte order, without a terminator.
// Invalid UTF-8 bytes become U+FFFD.
std::vector<std::byte> utf8_to_utf16(const std::string& text, bool big_endian);

// Hex dump of bytes, lowercase, no separators.
std::string to_hex(std::span<const uint8_t> bytes);

// Formats a byte count for people: "12.0 MiB (12582912 bytes)".
std::string human_bytes(uint64_t bytes);

// True when every byte in the span is zero.
bool all_zero(std::span<const std::byte> bytes);

}  // namespace troy
