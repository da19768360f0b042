#include "lab_config.h"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cerrno>

#include <fmt/format.h>

#include "delivery.h"
#include "files.h"
#include "suggest.h"

namespace troy::cli {
namespace {

// The defaults are what Makefile.lab and pxe/serve.sh used before lab.conf.
const std::vector<LabConfigKey> kLabConfigKeys = {
    {"served", "/srv/troy", "the served directory: payload, manifest, images, reports"},
    {"key", "/etc/troy/lab.key", "the private signing key (troy publish); never under served"},
    {"public_key", "/etc/troy/lab.pub", "the public key built into the payload"},
    {"hosts", "/etc/troy/hosts", "MAC to seat names: lines `MAC SEAT [NOTE...]`"},
    {"http_port", "8080", "the HTTP server's port"},
    {"http_bind", "0.0.0.0", "the address the HTTP server listens on"},
    {"log_dir", "/var/log/troy", "the HTTP server's access log, kept across restarts (errors: the journal)"},
    {"interface", "", "the classroom network's interface for DHCP and TFTP (empty: no DHCP, another server boots the machines)"},
    {"dhcp_range", "", "the addresses DHCP hands out: FROM,TO,LEASE (e.g. 10.0.0.50,10.0.0.150,12h)"},
    {"multicast", "", "interfaces to send each new version on by multicast (udpcast), IF or IF1,IF2: one sender per subnet (empty: HTTP only)"},
    {"multicast_max_bitrate", "600m", "the multicast senders' rate cap (udp-sender --max-bitrate): below the slowest link; without IGMP snooping every port of the VLAN gets it"},
    {"multicast_min_receivers", "1", "the first session starts once this many machines joined (the lab's size: it starts as soon as all are there) ..."},
    {"multicast_min_wait", "10", "... and this many seconds passed since the first joined"},
    {"multicast_max_wait", "60", "the first session starts anyway this many seconds after the first machine joined"},
    {"multicast_receiver_wait", "60", "how long a machine waits for a session to start before it takes HTTP: above max_wait plus a session's length"},
    {"kernel_args", "console=tty0 troy.then=reboot quiet", "the payload's kernel arguments (troy.then=reboot|poweroff)"},
    {"ipxe_dir", "/usr/lib/ipxe", "where Debian's ipxe package keeps undionly.kpxe and ipxe.efi"},
    {"sb_key", "/etc/troy/db.key", "the Secure Boot db key that signs troy.efi"},
    {"sb_cert", "/etc/troy/db.crt", "its certificate"},
    {"server_url", "", "this server as the machines reach it (http://ADDRESS:PORT), for the signed troy.efi"},
    {"uki_kernel_args", "console=tty0 troy.then=poweroff quiet", "the signed troy.efi's fixed kernel arguments"},
};

const LabConfigKey* find_key(std::string_view name) {
  for (const auto& key : kLabConfigKeys) {
    if (key.name == name) return &key;
  }
  return nullptr;
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
  return text;
}

bool valid_key_name(std::string_view name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

// A control character in a value (a stray CR from a Windows editor, an
// escape sequence) would reach a shell or a kernel command line: refused.
bool has_control_character(std::string_view value) {
  return std::any_of(value.begin(), value.end(), [](char c) {
    return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
  });
}

// ` #` (or a tab before #) starts a comment after a value.
std::string_view strip_comment(std::string_view value) {
  for (size_t i = 1; i < value.size(); ++i) {
    if (value[i] == '#' && (value[i - 1] == ' ' || value[i - 1] == '\t')) return value.substr(0, i);
  }
  return value;
}

std::string unknown_key_message(std::string_view name) {
  std::vector<std::string> names;
  for (const auto& key : kLabConfigKeys) names.push_back(key.name);
  if (auto near = nearest(name, names)) return fmt::format("unknown key '{}' (did you mean '{}'?)", name, *near);
  return fmt::format("unknown key '{}' (troy lab config --keys lists them)", name);
}

std::string upper(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

const std::vector<LabConfigKey>& lab_config_keys() { return kLabConfigKeys; }

std::string LabConfig::value(std::string_view key) const {
  if (auto entry = entries_.find(key); entry != entries_.end()) return entry->second.value;
  const LabConfigKey* known = find_key(key);
  return known ? known->default_value : "";
}

bool LabConfig::is_set(std::string_view key) const { return entries_.find(key) != entries_.end(); }

std::string LabConfig::where(std::string_view key) const {
  if (auto entry = entries_.find(key); entry != entries_.end()) return fmt::format("{}:{}", path_, entry->second.line);
  return path_.empty() ? std::string("the default") : fmt::format("{} (default)", path_);
}

Result<uint64_t> LabConfig::number(std::string_view key, uint64_t min, uint64_t max) const {
  const std::string text = value(key);
  uint64_t parsed = 0;
  bool ok = !text.empty() && text.size() <= 19;
  for (char c : text) {
    if (c < '0' || c > '9') ok = false;
    if (ok) parsed = parsed * 10 + static_cast<uint64_t>(c - '0');
  }
  if (!ok || parsed < min || parsed > max) {
    return Error{fmt::format("{}: {}: '{}' is not a whole number from {} to {}", where(key), key, text, min, max)};
  }
  return parsed;
}

// The keys whose values are whole numbers, and their ranges: checked
// before any program gets them (check_lab_config).
struct NumberKey {
  const char* name;
  uint64_t min, max;
};
constexpr NumberKey kNumberKeys[] = {
    {"http_port", 1, 65535},
    {"multicast_min_receivers", 1, kMaxMinReceivers},
    {"multicast_min_wait", 0, kMaxSessionWaitSeconds},
    {"multicast_max_wait", 1, kMaxSessionWaitSeconds},
    {"multicast_receiver_wait", 1, kMaxSessionWaitSeconds},
};

Result<void> check_lab_config(const LabConfig& config) {
  for (const NumberKey& key : kNumberKeys) TROY_TRY(config.number(key.name, key.min, key.max));
  // Empty: no cap (troy-lab-serve passes none).
  const std::string bitrate = config.value("multicast_max_bitrate");
  if (!bitrate.empty() && !parse_max_bitrate(bitrate))
    return Error{fmt::format("{}: multicast_max_bitrate: '{}' is not {}", config.where("multicast_max_bitrate"),
                             bitrate, kBitrateForm)};
  return success();
}

std::vector<std::pair<std::string, std::string>> LabConfig::effective() const {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& key : kLabConfigKeys) out.emplace_back(key.name, value(key.name));
  return out;
}

Result<LabConfig> parse_lab_config(std::string_view text, const std::string& path) {
  LabConfig config;
  config.path_ = path;
  size_t line_number = 0;
  while (!text.empty()) {
    ++line_number;
    const size_t end = text.find('\n');
    std::string_view line = text.substr(0, end);
    text.remove_prefix(end == std::string_view::npos ? text.size() : end + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);  // a file saved on Windows
    line = trim(line);
    if (line.empty() || line.front() == '#') continue;
    const std::string where = fmt::format("{}:{}", path, line_number);
    const size_t equals = line.find('=');
    if (equals == std::string_view::npos) {
      return Error{fmt::format("{}: expected `key = value`, found '{}'", where, line.substr(0, 60))};
    }
    const std::string_view name = trim(line.substr(0, equals));
    const std::string_view value = trim(strip_comment(trim(line.substr(equals + 1))));
    if (!valid_key_name(name)) {
      return Error{fmt::format("{}: '{}' is not a key (lower-case letters, digits, _)", where, name.substr(0, 60))};
    }
    if (!find_key(name)) return Error{fmt::format("{}: {}", where, unknown_key_message(name))};
    if (auto earlier = config.entries_.find(name); earlier != config.entries_.end()) {
      return Error{fmt::format("{}: {} is set twice (first on line {})", where, name, earlier->second.line)};
    }
    if (has_control_character(value)) return Error{fmt::format("{}: {}: the value has a control character", where, name)};
    config.entries_.emplace(std::string(name), LabConfig::Entry{std::string(value), line_number});
  }
  return config;
}

Result<LabConfig> load_lab_config(const std::string& path, bool missing_ok) {
  struct stat info {};
  if (missing_ok && ::stat(path.c_str(), &info) != 0 && errno == ENOENT) return parse_lab_config("", "");
  TROY_ASSIGN(text, read_small_file(path, kMaxLabConfigBytes, "lab configuration"));
  return parse_lab_config(text, path);
}

Result<LabConfig> load_lab_config(const std::string& explicit_path) {
  if (explicit_path.empty()) return load_lab_config(kDefaultLabConfigPath, true);
  return load_lab_config(explicit_path, false);
}

Result<std::string> served_directory(const std::string& flag, const std::string& explicit_config_path) {
  if (!flag.empty()) return flag;
  TROY_ASSIGN(config, load_lab_config(explicit_config_path));
  const std::string served = config.value("served");
  if (served.empty()) return Error{fmt::format("{}: served is empty: the served directory is not set", config.where("served"))};
  return served;
}

std::string lab_config_shell(const LabConfig& config) {
  std::string out;
  for (const auto& [key, value] : config.effective()) {
    std::string quoted;
    for (char c : value) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
    out += fmt::format("{}='{}'\n", upper(key), quoted);
  }
  return out;
}

std::string lab_config_make(const LabConfig& config) {
  std::string out;
  for (const auto& [key, value] : config.effective()) {
    std::string escaped;
    for (char c : value) {
      if (c == '$') escaped += "$$";
      else if (c == '#') escaped += "\\#";
      else escaped += c;
    }
    out += fmt::format("{} ?= {}\n", upper(key), escaped);
  }
  return out;
}

}  // namespace troy::cli
