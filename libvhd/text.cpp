#include "text.h"

#include <cstring>

#include <fmt/format.h>

namespace troy {
namespace {

void append_utf8(std::string& out, uint32_t code_point) {
  if (code_point < 0x80) {
    out += static_cast<char>(code_point);
  } else if (code_point < 0x800) {
    out += static_cast<char>(0xC0 | (code_point >> 6));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  } else if (code_point < 0x10000) {
    out += static_cast<char>(0xE0 | (code_point >> 12));
    out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (code_point >> 18));
    out += static_cast<char>(0x80 | ((code_point >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  }
}

}  // namespace

std::string utf16_to_utf8(std::span<const std::byte> bytes, bool big_endian) {
  constexpr uint32_t kReplacement = 0xFFFD;
  std::string out;
  const size_t units = bytes.size() / 2;
  auto unit_at = [&](size_t i) -> uint32_t {
    const auto a = static_cast<uint32_t>(bytes[2 * i]);
    const auto b = static_cast<uint32_t>(bytes[2 * i + 1]);
    return big_endian ? (a << 8 | b) : (b << 8 | a);
  };
  for (size_t i = 0; i < units; i++) {
    const uint32_t unit = unit_at(i);
    if (unit == 0) break;
    if (unit >= 0xD800 && unit < 0xDC00 && i + 1 < units) {
      const uint32_t low = unit_at(i + 1);
      if (low >= 0xDC00 && low < 0xE000) {
        append_utf8(out, 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00));
        i++;
        continue;
      }
    }
    const bool lone_surrogate = unit >= 0xD800 && unit < 0xE000;
    append_utf8(out, lone_surrogate ? kReplacement : unit);
  }
  return out;
}

namespace {

// Decodes one UTF-8 sequence at text[i], advancing i; U+FFFD when invalid.
uint32_t next_code_point(const std::string& text, size_t& i) {
  constexpr uint32_t kReplacement = 0xFFFD;
  const auto byte = [&](size_t at) { return static_cast<uint8_t>(text[at]); };
  const uint8_t lead = byte(i++);
  if (lead < 0x80) return lead;
  const int extra = lead >= 0xF0 && lead < 0xF5 ? 3 : lead >= 0xE0 ? 2 : lead >= 0xC2 && lead < 0xE0 ? 1 : -1;
  if (extra < 0 || lead >= 0xF5) return kReplacement;
  uint32_t code = lead & (0x3F >> extra);
  for (int k = 0; k < extra; k++) {
    if (i >= text.size() || (byte(i) & 0xC0) != 0x80) return kReplacement;
    code = code << 6 | (byte(i++) & 0x3F);
  }
  static constexpr uint32_t kSmallest[] = {0, 0x80, 0x800, 0x10000};
  if (code < kSmallest[extra] || code > 0x10FFFF || (code >= 0xD800 && code < 0xE000)) return kReplacement;
  return code;
}

}  // namespace

std::vector<std::byte> utf8_to_utf16(const std::string& text, bool big_endian) {
  std::vector<std::byte> out;
  const auto put = [&](uint32_t unit) {
    const auto high = static_cast<std::byte>(unit >> 8);
    const auto low = static_cast<std::byte>(unit & 0xFF);
    out.push_back(big_endian ? high : low);
    out.push_back(big_endian ? low : high);
  };
  for (size_t i = 0; i < text.size();) {
    const uint32_t code = next_code_point(text, i);
    if (code < 0x10000) {
      put(code);
    } else {
      put(0xD800 + ((code - 0x10000) >> 10));
      put(0xDC00 + ((code - 0x10000) & 0x3FF));
    }
  }
  return out;
}

namespace {

// The length of the valid UTF-8 sequence at text[i] and its code point, or 0
// when the bytes there are not UTF-8.
size_t utf8_sequence(std::string_view text, size_t i, uint32_t& code) {
  const auto byte = [&](size_t at) { return static_cast<uint8_t>(text[at]); };
  const uint8_t lead = byte(i);
  if (lead < 0x80) {
    code = lead;
    return 1;
  }
  const size_t extra = lead >= 0xC2 && lead < 0xE0 ? 1 : lead >= 0xE0 && lead < 0xF0 ? 2 : lead >= 0xF0 && lead < 0xF5 ? 3 : 0;
  if (extra == 0 || i + extra >= text.size()) return 0;
  code = lead & (0x3F >> extra);
  for (size_t k = 1; k <= extra; k++) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
    code = code << 6 | (byte(i + k) & 0x3F);
  }
  static constexpr uint32_t kSmallest[] = {0, 0x80, 0x800, 0x10000};
  if (code < kSmallest[extra] || code > 0x10FFFF || (code >= 0xD800 && code < 0xE000)) return 0;
  return extra + 1;
}

// Code points that move the cursor, change the terminal's state or reorder
// what is shown: C0, DEL, C1, LINE/PARAGRAPH SEPARATOR, the bidi controls.
bool is_control(uint32_t code) {
  return code < 0x20 || (code >= 0x7F && code < 0xA0) || code == 0x2028 || code == 0x2029 ||
         (code >= 0x200E && code <= 0x200F) || (code >= 0x202A && code <= 0x202E) ||
         (code >= 0x2066 && code <= 0x2069);
}

}  // namespace

std::string printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    uint32_t code = 0;
    const size_t length = utf8_sequence(text, i, code);
    if (length == 0) {
      out += fmt::format("\\x{:02x}", static_cast<uint8_t>(text[i]));
      i++;
      continue;
    }
    if (!is_control(code)) out.append(text.substr(i, length));
    else if (code < 0x80) out += fmt::format("\\x{:02x}", code);
    else out += fmt::format("\\u{:04x}", code);
    i += length;
  }
  return out;
}

std::string to_hex(std::span<const uint8_t> bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (uint8_t b : bytes) out += fmt::format("{:02x}", b);
  return out;
}

std::string human_bytes(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024 && unit < 5) {
    value /= 1024;
    unit++;
  }
  if (unit == 0) return fmt::format("{} bytes", bytes);
  return fmt::format("{:.1f} {} ({} bytes)", value, kUnits[unit], bytes);
}

bool all_zero(std::span<const std::byte> bytes) {
  // Compare word-sized chunks first; this runs on every converted chunk.
  size_t i = 0;
  for (; i + sizeof(uint64_t) <= bytes.size(); i += sizeof(uint64_t)) {
    uint64_t word;
    std::memcpy(&word, bytes.data() + i, sizeof word);
    if (word != 0) return false;
  }
  for (; i < bytes.size(); i++)
    if (bytes[i] != std::byte{0}) return false;
  return true;
}

}  // namespace troy
