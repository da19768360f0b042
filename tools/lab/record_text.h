// How the lab server writes what it records (reports, boot states, the
// status page's data): UTC timestamps and JSON that never throws.
#pragma once

#include <chrono>
#include <cstdint>
#include <ctime>
#include <string>

namespace troy::cli {

inline std::string iso_utc(std::chrono::system_clock::time_point time) {
  const std::time_t seconds = std::chrono::system_clock::to_time_t(time);
  std::tm utc{};
  ::gmtime_r(&seconds, &utc);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}

inline int64_t epoch_seconds(std::chrono::system_clock::time_point time) {
  return std::chrono::duration_cast<std::chrono::seconds>(time.time_since_epoch()).count();
}

// Invalid UTF-8 (only possible in what the server adds, e.g. REMOTE_ADDR)
// becomes U+FFFD instead of an exception.
template <typename AnyJson>
std::string dump_json(const AnyJson& value, int indent) {
  return value.dump(indent, ' ', false, AnyJson::error_handler_t::replace);
}

}  // namespace troy::cli
