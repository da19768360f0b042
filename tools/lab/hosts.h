// The lab's hosts file: which seat (a name the admin uses, "R12-07") each
// machine (its MAC address) is. Read by the status page and table, the night
// rollout (wake-on-LAN targets) and anything else naming machines.
//
// Default path /etc/troy/hosts (`--hosts FILE`, lab.conf key `hosts`).
// One machine per line:
//
//   # room 12, front row
//   52:54:00:12:34:56  R12-01  +teacher  teacher's desk
//   52-54-00-12-34-57  R12-02
//
// Words right after SEAT that start with '+' are tags: +teacher, the machine
// may check its changes in to the server (the boot menu offers it,
// /cgi-bin/checkin accepts its upload; docs/checkin.md); +keep-child, in a
// native-VHD-boot lab the payload keeps this machine's student child
// (/cgi-bin/boot adds troy.child=keep to its kernel arguments; docs/vhdboot.md).
// An unknown tag is an error (a typo must not silently drop a teacher).
//
// MAC in any case, separated by ':' or '-' (stored as 52-54-00-12-34-56, the
// form server.h names report files by); SEAT is one word of printable
// characters (at most kMaxSeatBytes); NOTE is the rest of the line. '#' starts
// a comment when it begins a line (after blanks); blank lines are skipped.
// A bad MAC, a missing or bad seat, a control character, or a MAC or seat
// given twice is ONE error line naming FILE:LINE and the field.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "result.h"

namespace troy::cli {

inline constexpr const char* kDefaultHostsPath = "/etc/troy/hosts";
inline constexpr size_t kMaxHostsFileBytes = 1 << 20;
inline constexpr size_t kMaxSeatBytes = 64;
inline constexpr size_t kMaxHostNoteBytes = 256;
inline constexpr const char* kTeacherTag = "teacher";
inline constexpr const char* kKeepChildTag = "keep-child";

struct HostEntry {
  std::string machine;  // normalized: 52-54-00-12-34-56
  std::string seat;
  std::string note;     // may be empty
  size_t line = 0;      // 1-based, for messages
  std::vector<std::string> tags;  // without the '+': "teacher"

  bool has_tag(std::string_view tag) const;
};

struct Hosts {
  std::string path;                // where it was read from ("" when none)
  std::vector<HostEntry> entries;  // in file order

  // The entry for a machine (any MAC spelling); nullptr when not listed.
  const HostEntry* find(std::string_view machine) const;
  // The seat name, or "" when the machine is not listed.
  std::string seat_of(std::string_view machine) const;
};

// Parses the text of a hosts file; `path` is only used in messages.
Result<Hosts> parse_hosts(std::string_view text, const std::string& path);

// Reads and parses `path` (a regular file of at most kMaxHostsFileBytes).
// When `missing_ok` and the file does not exist, an empty Hosts (the default
// path on a server that has none); otherwise a missing file is an error.
Result<Hosts> read_hosts(const std::string& path, bool missing_ok);

}  // namespace troy::cli
