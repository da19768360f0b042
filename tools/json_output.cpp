// The shared printing of summaries, --stats and --json (json_output.h).
#include "json_output.h"

#include <cmath>

#include <fmt/format.h>

#include "progress.h"

namespace troy::cli {
namespace {

// The length of the UTF-8 sequence starting at text[at], 0 if invalid.
size_t utf8_sequence(std::string_view text, size_t at) {
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(text[i]); };
  const uint8_t lead = byte(at);
  if (lead < 0x80) return 1;
  size_t length = 0;
  uint32_t code = 0;
  if ((lead & 0xe0) == 0xc0) length = 2, code = lead & 0x1f;
  else if ((lead & 0xf0) == 0xe0) length = 3, code = lead & 0x0f;
  else if ((lead & 0xf8) == 0xf0) length = 4, code = lead & 0x07;
  else return 0;
  if (at + length > text.size()) return 0;
  for (size_t i = 1; i < length; i++) {
    if ((byte(at + i) & 0xc0) != 0x80) return 0;
    code = code << 6 | (byte(at + i) & 0x3f);
  }
  static constexpr uint32_t kSmallest[] = {0, 0, 0x80, 0x800, 0x10000};
  if (code < kSmallest[length] || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) return 0;
  return length;
}

std::string stats_scalar(const Json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_null()) return "-";
  return value.dump(-1, ' ', false, Json::error_handler_t::replace);
}

bool all_scalars(const Json& list) {
  for (const Json& item : list)
    if (item.is_structured()) return false;
  return true;
}

void flatten_stats(const std::string& name, const Json& value, std::vector<std::string>& lines) {
  if (value.is_object()) {
    for (const auto& [key, item] : value.items()) flatten_stats(name.empty() ? key : name + "." + key, item, lines);
  } else if (value.is_array() && !all_scalars(value)) {
    for (size_t i = 0; i < value.size(); i++) flatten_stats(fmt::format("{}.{}", name, i), value[i], lines);
  } else if (value.is_array()) {
    std::string joined;
    for (const Json& item : value) joined += (joined.empty() ? "" : ", ") + stats_scalar(item);
    lines.push_back(fmt::format("{}: {}", name, joined.empty() ? "-" : joined));
  } else {
    lines.push_back(fmt::format("{}: {}", name, stats_scalar(value)));
  }
}

}  // namespace

bool valid_utf8(std::string_view text) {
  for (size_t at = 0; at < text.size();) {
    const size_t length = utf8_sequence(text, at);
    if (length == 0) return false;
    at += length;
  }
  return true;
}

bool has_invalid_utf8(const Json& value) {
  if (value.is_string()) return !valid_utf8(value.get_ref<const std::string&>());
  if (value.is_object()) {
    for (const auto& [key, item] : value.items())
      if (!valid_utf8(key) || has_invalid_utf8(item)) return true;
  } else if (value.is_array()) {
    for (const Json& item : value)
      if (has_invalid_utf8(item)) return true;
  }
  return false;
}

std::string json_line(Json object) {
  if (object.is_object()) object["lossy_paths"] = has_invalid_utf8(object);
  try {
    return object.dump(-1, ' ', false, Json::error_handler_t::replace);
  } catch (const std::exception& error) {  // replace makes this unreachable; never let it escape
    return Json{{"error", fmt::format("troy could not write its JSON report: {}", error.what())}}.dump(
        -1, ' ', true, Json::error_handler_t::replace);
  }
}

std::vector<std::string> stats_lines(const Json& object) {
  std::vector<std::string> lines;
  flatten_stats("", object, lines);
  return lines;
}

std::string short_duration(double seconds) {
  if (!(seconds >= 0)) seconds = 0;
  if (seconds < 59.95) return fmt::format("{:.1f} s", seconds);
  return clock_duration(seconds);
}

uint64_t bytes_per_second(uint64_t bytes, double seconds) {
  if (!(seconds > 0)) return 0;
  return static_cast<uint64_t>(std::llround(static_cast<double>(bytes) / seconds));
}

std::string short_rate(uint64_t bytes, double seconds) {
  if (!(seconds > 0)) return "-";
  return short_bytes(static_cast<double>(bytes_per_second(bytes, seconds))) + "/s";
}

std::string count_of(uint64_t count, const std::string& noun) {
  return fmt::format("{} {}{}", count, noun, count == 1 ? "" : "s");
}

double json_seconds(double seconds) { return std::round(seconds * 1000) / 1000; }

}  // namespace troy::cli
