#include "disks.h"

#include <dirent.h>
#include <fnmatch.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

namespace troy::cli {
namespace {

// Never a lab's Windows disk; listed by /sys/block all the same.
constexpr const char* kSkippedPrefixes[] = {"loop", "ram", "zram", "sr", "fd", "dm-", "md", "nbd", "zd"};

std::optional<std::string> read_small_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return std::nullopt;
  std::string text(4096, '\0');
  file.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(file.gcount()));
  return text;
}

// Without surrounding white space and NULs (SCSI pads with spaces, NVMe with both).
std::string trimmed(std::string text) {
  const auto blank = [](char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\0'; };
  while (!text.empty() && blank(text.back())) text.pop_back();
  size_t start = 0;
  while (start < text.size() && blank(text[start])) start++;
  return text.substr(start);
}

// The SCSI Unit Serial Number VPD page (0x80): a 4-byte header whose last
// byte is the length, then the serial in ASCII. SATA disks behind libata
// show theirs only here.
std::string serial_from_vpd80(const std::string& page) {
  if (page.size() < 4 || static_cast<unsigned char>(page[1]) != 0x80) return "";
  const size_t length = std::min<size_t>(static_cast<unsigned char>(page[3]), page.size() - 4);
  return trimmed(page.substr(4, length));
}

bool skipped(const std::string& name) {
  return name.empty() || name[0] == '.' ||
         std::any_of(std::begin(kSkippedPrefixes), std::end(kSkippedPrefixes),
                     [&](const char* prefix) { return name.starts_with(prefix); });
}

bool glob_matches(const std::string& pattern, const std::string& text) {
  return ::fnmatch(pattern.c_str(), text.c_str(), 0) == 0;
}

}  // namespace

Result<DiskInfo> read_disk_info(const std::string& block_dir, const std::string& name) {
  const std::string folder = block_dir + "/" + name;
  DiskInfo disk;
  disk.name = name;
  const auto sectors_text = read_small_file(folder + "/size");
  if (!sectors_text) return Error{fmt::format("{}/size: cannot be read", folder)};
  const std::string sectors = trimmed(*sectors_text);
  uint64_t count = 0;
  const auto [end, error] = std::from_chars(sectors.data(), sectors.data() + sectors.size(), count);
  if (error != std::errc() || end != sectors.data() + sectors.size() || count > (UINT64_MAX >> 9))
    return Error{fmt::format("{}/size: '{}' is not a number of sectors", folder, sectors)};
  disk.size = count * 512;
  disk.model = trimmed(read_small_file(folder + "/device/model").value_or(""));
  for (const char* candidate : {"/device/serial", "/serial"}) {
    if (!disk.serial.empty()) break;
    disk.serial = trimmed(read_small_file(folder + candidate).value_or(""));
  }
  if (disk.serial.empty()) disk.serial = serial_from_vpd80(read_small_file(folder + "/device/vpd_pg80").value_or(""));
  return disk;
}

Result<std::vector<DiskInfo>> list_disks(const std::string& block_dir) {
  DIR* directory = ::opendir(block_dir.c_str());
  if (!directory) return Error{fmt::format("{}: cannot list the disks (is sysfs mounted?)", block_dir)};
  std::vector<std::string> names;
  while (const dirent* entry = ::readdir(directory))
    if (!skipped(entry->d_name)) names.emplace_back(entry->d_name);
  ::closedir(directory);
  std::sort(names.begin(), names.end());
  std::vector<DiskInfo> disks;
  for (const std::string& name : names) {
    TROY_ASSIGN(disk, read_disk_info(block_dir, name));
    disks.push_back(std::move(disk));
  }
  return disks;
}

bool rule_matches(const std::string& rule, const DiskInfo& disk) {
  std::istringstream pairs(rule);
  std::string pair;
  bool any = false;
  while (pairs >> pair) {
    const size_t equals = pair.find('=');
    if (equals == std::string::npos) return false;
    const std::string key = pair.substr(0, equals);
    const std::string value = pair.substr(equals + 1);
    any = true;
    if (key == "size") {
      if (value != std::to_string(disk.size)) return false;
    } else if (key == "model") {
      if (!glob_matches(value, disk.model)) return false;
    } else if (key == "serial") {
      if (!glob_matches(value, disk.serial)) return false;
    } else {
      return false;  // parse_disk_rule admits no other key; a rule we cannot read matches nothing
    }
  }
  return any;
}

std::string describe(const DiskInfo& disk) {
  return fmt::format("{} ({} bytes, model '{}', serial '{}')", disk.name, disk.size, disk.model, disk.serial);
}

Result<DiskInfo> choose_disk(const std::vector<DiskInfo>& disks, const std::vector<std::string>& rules,
                             const std::optional<std::string>& by_name) {
  std::string listing;
  for (const DiskInfo& disk : disks) listing += fmt::format("{}{}", listing.empty() ? "" : "; ", describe(disk));
  if (listing.empty()) listing = "none";
  std::vector<const DiskInfo*> chosen;
  std::string wanted;
  if (by_name) {
    wanted = fmt::format("the disk named {}", *by_name);
    for (const DiskInfo& disk : disks)
      if (disk.name == *by_name) chosen.push_back(&disk);
  } else {
    if (rules.empty()) return Error{"the manifest has no 'disk' rule: troy publish --disk RULE says which disk to write"};
    for (size_t i = 0; i < rules.size(); i++) wanted += fmt::format("{}'{}'", i ? " or " : "disk rule ", rules[i]);
    for (const DiskInfo& disk : disks)
      if (std::any_of(rules.begin(), rules.end(), [&](const std::string& rule) { return rule_matches(rule, disk); }))
        chosen.push_back(&disk);
  }
  if (chosen.empty()) return Error{fmt::format("no disk matches {} (disks here: {}); nothing written", wanted, listing)};
  if (chosen.size() > 1) {
    std::string names;
    for (const DiskInfo* disk : chosen) names += " " + disk->name;
    return Error{fmt::format("{} disks match {}:{}; refusing to guess, nothing written", chosen.size(), wanted, names)};
  }
  return *chosen.front();
}

}  // namespace troy::cli
