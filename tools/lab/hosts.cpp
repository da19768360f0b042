#include "hosts.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <map>

#include <fmt/format.h>

#include "files.h"
#include "server.h"

namespace troy::cli {
namespace {

bool is_blank(char c) { return c == ' ' || c == '\t'; }
// C0 controls and DEL. Bytes >= 0x80 (UTF-8 seat names) are allowed; the
// page and table escape what they print anyway.
bool is_control(char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }

std::string_view trim_blanks(std::string_view text) {
  while (!text.empty() && is_blank(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_blank(text.back())) text.remove_suffix(1);
  return text;
}

std::string_view next_word(std::string_view& rest) {
  rest = trim_blanks(rest);
  size_t end = 0;
  while (end < rest.size() && !is_blank(rest[end])) ++end;
  const std::string_view word = rest.substr(0, end);
  rest.remove_prefix(end);
  return word;
}

Result<HostEntry> parse_host_line(std::string_view line, const std::string& where) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);  // written on Windows
  for (char c : line)
    if (is_control(c) && !is_blank(c))
      return Error{fmt::format("{}: a control character (0x{:02x}); a line is MAC SEAT [NOTE]", where,
                               static_cast<unsigned>(static_cast<unsigned char>(c)))};
  std::string_view rest = line;
  const std::string_view mac_text = next_word(rest);
  const auto mac = normalize_mac(mac_text);
  if (!mac)
    return Error{fmt::format("{}: MAC: '{}' is not a MAC address (six pairs of hex digits separated by ':' or '-')",
                             where, mac_text.substr(0, 40))};
  const std::string_view seat = next_word(rest);
  if (seat.empty()) return Error{fmt::format("{}: SEAT: missing (a line is MAC SEAT [NOTE])", where)};
  if (seat.size() > kMaxSeatBytes)
    return Error{fmt::format("{}: SEAT: {} bytes, more than {}", where, seat.size(), kMaxSeatBytes)};
  std::vector<std::string> tags;
  while (!trim_blanks(rest).empty() && trim_blanks(rest).front() == '+') {
    const std::string_view tag = next_word(rest).substr(1);
    if (tag != kTeacherTag && tag != kKeepChildTag)
      return Error{fmt::format("{}: TAG: '+{}' is not a tag (the tags are +{} and +{}; a NOTE does not start with "
                               "'+')", where, tag.substr(0, 40), kTeacherTag, kKeepChildTag)};
    tags.emplace_back(tag);
  }
  const std::string_view note = trim_blanks(rest);
  if (note.size() > kMaxHostNoteBytes)
    return Error{fmt::format("{}: NOTE: {} bytes, more than {}", where, note.size(), kMaxHostNoteBytes)};
  return HostEntry{*mac, std::string(seat), std::string(note), 0, std::move(tags)};
}

}  // namespace

const HostEntry* Hosts::find(std::string_view machine) const {
  const auto mac = normalize_mac(machine);
  if (!mac) return nullptr;
  for (const HostEntry& entry : entries)
    if (entry.machine == *mac) return &entry;
  return nullptr;
}

bool HostEntry::has_tag(std::string_view tag) const {
  return std::find(tags.begin(), tags.end(), tag) != tags.end();
}

std::string Hosts::seat_of(std::string_view machine) const {
  const HostEntry* entry = find(machine);
  return entry ? entry->seat : std::string();
}

Result<Hosts> parse_hosts(std::string_view text, const std::string& path) {
  Hosts hosts;
  hosts.path = path;
  std::map<std::string, size_t> line_of_mac;
  std::map<std::string, size_t> line_of_seat;
  size_t number = 0;
  while (!text.empty()) {
    const size_t end = std::min(text.find('\n'), text.size());
    const std::string_view line = text.substr(0, end);
    text.remove_prefix(std::min(end + 1, text.size()));
    ++number;
    const std::string_view content = trim_blanks(line);
    if (content.empty() || content == "\r" || content.front() == '#') continue;
    const std::string where = fmt::format("{}:{}", path, number);
    TROY_ASSIGN(entry, parse_host_line(line, where));
    entry.line = number;
    if (const auto seen = line_of_mac.find(entry.machine); seen != line_of_mac.end())
      return Error{fmt::format("{}: MAC: {} is already listed on line {}", where, entry.machine, seen->second)};
    if (const auto seen = line_of_seat.find(entry.seat); seen != line_of_seat.end())
      return Error{fmt::format("{}: SEAT: '{}' is already listed on line {}", where, entry.seat, seen->second)};
    line_of_mac[entry.machine] = number;
    line_of_seat[entry.seat] = number;
    hosts.entries.push_back(std::move(entry));
  }
  return hosts;
}

Result<Hosts> read_hosts(const std::string& path, bool missing_ok) {
  struct stat st {};
  if (missing_ok && ::stat(path.c_str(), &st) != 0 && errno == ENOENT) return Hosts{};
  TROY_ASSIGN(text, read_small_file(path, kMaxHostsFileBytes, "a hosts file (MAC SEAT [NOTE] lines)"));
  return parse_hosts(text, path);
}

}  // namespace troy::cli
