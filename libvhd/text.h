// Small text helpers shared by the drivers and the CLI.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace troy {

// Decodes UTF-16 (either byte order) to UTF-8. Stops at the first NUL code
// unit. Unpaired surrogates, which occur in real files, become U+FFFD.
std::string utf16_to_utf8(std::span<const std::byte> bytes, bool big_endian);

// Encodes UTF-8 as UTF-16 in the given byte order, without a terminator.
// Invalid UTF-8 bytes become U+FFFD.
std::vector<std::byte> utf8_to_utf16(const std::string& text, bool big_endian);

// Text from an untrusted source (a name inside an image, a file name, a
// server's answer) made safe to print on a terminal as one line: control
// characters (C0 with CR, LF and ESC, DEL, C1), the Unicode line separators
// and bidirectional overrides are written as escapes (\x1b, \u009b,
// \u202e), as are bytes that are not UTF-8 (\xff); everything else, the
// backslashes of Windows paths included, is kept. JSON output escapes by
// itself and keeps the exact text instead.
std::string printable(std::string_view text);

// Hex dump of bytes, lowercase, no separators.
std::string to_hex(std::span<const uint8_t> bytes);

// Formats a byte count for people: "12.0 MiB (12582912 bytes)".
std::string human_bytes(uint64_t bytes);

// True when every byte in the span is zero.
bool all_zero(std::span<const std::byte> bytes);

}  // namespace troy
