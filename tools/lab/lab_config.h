// /etc/troy/lab.conf: the lab server's settings in one file, read by every
// `troy lab ...` command, by Makefile.lab (through `troy lab config --make`)
// and by the systemd units (through `troy lab config --shell`).
//
// The format: one `key = value` per line; blank lines and lines starting
// with `#` are skipped; ` #` after a value starts a comment (a value cannot
// contain " #"); spaces around the key and the value are dropped; an empty
// value is a value (e.g. `interface =`: no DHCP). A key the table below does
// not list, a key given twice, or a line without `=` is one error naming
// FILE:LINE, so a typo is never silently ignored.
//
// Each helper owning a key adds it to kLabConfigKeys in lab_config.cpp (and
// to the commented conffile, conf/lab.conf; a unit test compares the two).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "result.h"

namespace troy::cli {

inline constexpr const char* kDefaultLabConfigPath = "/etc/troy/lab.conf";
inline constexpr uint64_t kMaxLabConfigBytes = 64 * 1024;

struct LabConfigKey {
  std::string name;           // e.g. "served"
  std::string default_value;  // used when the file does not set it
  std::string meaning;        // one line, for `troy lab config --help-keys`
};

// Every key lab.conf accepts, in the order the conffile lists them.
const std::vector<LabConfigKey>& lab_config_keys();

class LabConfig {
 public:
  // The file read ("" when no file was read: the defaults).
  const std::string& path() const { return path_; }

  // The key's value: the file's when set there, else its default. A key not
  // in lab_config_keys() is a programming error: "" (and a unit test).
  std::string value(std::string_view key) const;
  // True when the file sets the key (even to an empty value).
  bool is_set(std::string_view key) const;
  // "FILE:LINE" where the key was set, else "FILE" or "the default": the
  // start of an error line about the value ("/etc/troy/lab.conf:7: http_port: ...").
  std::string where(std::string_view key) const;

  // The value as a whole number in [min, max], else one error line naming
  // where(key), the key and the value.
  Result<uint64_t> number(std::string_view key, uint64_t min, uint64_t max) const;

  // Every key with its value (defaults included), in the table's order.
  std::vector<std::pair<std::string, std::string>> effective() const;

 private:
  friend Result<LabConfig> parse_lab_config(std::string_view text, const std::string& path);
  struct Entry {
    std::string value;
    size_t line = 0;
  };
  std::string path_;
  std::map<std::string, Entry, std::less<>> entries_;
};

// Parses the text of a lab.conf; `path` names it in error lines.
Result<LabConfig> parse_lab_config(std::string_view text, const std::string& path);

// The values every program relies on: the numbers (http_port, the multicast
// session's counts and seconds) whole and in range; else one error line
// naming FILE:LINE and the key. `troy lab config` checks before it prints.
Result<void> check_lab_config(const LabConfig& config);

// Reads and parses `path` (a regular file of at most kMaxLabConfigBytes).
// When `missing_ok` and the file does not exist, the defaults: a server not
// configured yet, or a checkout, runs as before. An explicit --config FILE
// passes missing_ok = false.
Result<LabConfig> load_lab_config(const std::string& path, bool missing_ok);
// What an admin's `troy lab ...` command reads: `explicit_path` (its
// --config FILE or $TROY_LAB_CONFIG) when not empty, which must exist; else
// /etc/troy/lab.conf when it exists; else the defaults.
Result<LabConfig> load_lab_config(const std::string& explicit_path);

// The served directory of an admin's command: `flag` (its --served or
// $TROY_SERVED) when not empty, else lab.conf's `served` (read as above).
// The CGI programs (troy lab report|boot) never guess: they need the flag.
Result<std::string> served_directory(const std::string& flag, const std::string& explicit_config_path);

// `KEY='value'` lines for `troy lab config --shell`, each value single-quoted
// for sh (systemd's EnvironmentFile reads the same quoting), keys upper case.
std::string lab_config_shell(const LabConfig& config);
// `KEY ?= value` lines for make (Makefile.lab: the command line and the
// environment still win), keys upper case; `$` and `#` escaped for make.
std::string lab_config_make(const LabConfig& config);

}  // namespace troy::cli
