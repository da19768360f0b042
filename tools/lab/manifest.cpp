#include "manifest.h"

#include <algorithm>
#include <charconv>
#include <ctime>
#include <set>

#include <fmt/format.h>

#include "io.h"
#include "text.h"
#include "vhdboot.h"

namespace troy::cli {
namespace {

constexpr std::string_view kManifestMagic = "troy-manifest 1";

std::vector<std::string_view> split_spaces(std::string_view line) {
  std::vector<std::string_view> fields;
  size_t at = 0;
  while (true) {
    const size_t space = line.find(' ', at);
    fields.push_back(line.substr(at, space - at));
    if (space == std::string_view::npos) return fields;
    at = space + 1;
  }
}

std::optional<uint64_t> parse_number(std::string_view text) {
  uint64_t value = 0;
  if (text.empty() || (text.size() > 1 && text[0] == '0')) return std::nullopt;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

bool all_of_chars(std::string_view text, std::string_view allowed_punctuation) {
  return std::all_of(text.begin(), text.end(), [&](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           allowed_punctuation.find(c) != std::string_view::npos;
  });
}

bool is_sha256(std::string_view text) {
  return text.size() == 64 &&
         std::all_of(text.begin(), text.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

bool is_image_id(std::string_view text) {
  return !text.empty() && text.size() <= 64 &&
         std::all_of(text.begin(), text.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || c == '-'; });
}

// A path inside the served directory: relative, no "..", plain characters.
bool is_served_path(std::string_view path) {
  if (path.empty() || path.front() == '/' || path.size() > 255 || !all_of_chars(path, "._/-")) return false;
  size_t at = 0;
  while (at <= path.size()) {
    const size_t slash = std::min(path.find('/', at), path.size());
    const std::string_view part = path.substr(at, slash - at);
    if (part.empty() || part == "." || part == "..") return false;
    at = slash + 1;
  }
  return true;
}

// Glob characters allowed, but nothing the payload's sh would split on or
// treat specially besides the glob itself (no spaces, quotes, $, `, \ or the
// ',' that separates a troy.disk= rule's keys).
// At most 128 characters: ATA models are 40, serials 20, NVMe 40 and 20.
bool is_rule_value(std::string_view value) {
  return !value.empty() && value.size() <= 128 && all_of_chars(value, "._-*?[]!:+/");
}

struct LineParser {
  const std::string& path;
  size_t line_number = 0;
  Error bad(std::string_view what) const { return Error{fmt::format("{}: line {}: {}", path, line_number, what)}; }
};

Result<ManifestVersion> parse_version(const std::vector<std::string_view>& fields, const LineParser& at) {
  ManifestVersion version;
  if (fields.size() < 3) return at.bad("a version line needs NAME and base or delta");
  version.name = fields[1];
  if (!valid_version_name(version.name))
    return at.bad(fmt::format("version name '{}' is not 1 to 64 of A-Z a-z 0-9 . _ -", fields[1]));
  if (fields[2] == "base") {
    if (fields.size() != 4) return at.bad("a base version line is: version NAME base IMAGE_ID");
    version.image_id = fields[3];
  } else if (fields[2] == "delta") {
    if (fields.size() != 11)
      return at.bad("a delta version line is: version NAME delta FROM FILE SIZE SHA256 FINGERPRINT FP_SIZE "
                    "FP_SHA256 IMAGE_ID");
    version.from = fields[3];
    version.file = fields[4];
    version.fingerprint = fields[7];
    version.image_id = fields[10];
    const auto size = parse_number(fields[5]);
    const auto fingerprint_size = parse_number(fields[8]);
    if (!size || !fingerprint_size) return at.bad("a size is not a whole number of bytes");
    version.size = *size;
    version.fingerprint_size = *fingerprint_size;
    if (!is_served_path(version.file) || !is_served_path(version.fingerprint))
      return at.bad("a file is not a plain path inside the served directory");
    if (!is_sha256(fields[6]) || !is_sha256(fields[9])) return at.bad("a sha256 is not 64 lower-case hex digits");
    version.sha256 = fields[6];
    version.fingerprint_sha256 = fields[9];
  } else {
    return at.bad(fmt::format("version kind '{}' is neither base nor delta", fields[2]));
  }
  if (!is_image_id(version.image_id)) return at.bad("the image id is not lower-case hex and dashes");
  return version;
}

// serial N, published TIME, expires TIME: each at most once.
Result<void> parse_freshness_line(Manifest& manifest, const std::vector<std::string_view>& fields,
                                  const LineParser& at) {
  if (fields[0] == "serial") {
    const auto serial = fields.size() == 2 ? parse_number(fields[1]) : std::nullopt;
    if (!serial || *serial == 0 || manifest.serial != 0) return at.bad("serial must appear once, with a number from 1");
    manifest.serial = *serial;
    return success();
  }
  std::optional<int64_t>& field = fields[0] == "published" ? manifest.published : manifest.expires;
  const auto time = fields.size() == 2 ? parse_utc_time(fields[1]) : std::nullopt;
  if (!time || field)
    return at.bad(fmt::format("{} must appear once, as {} YYYY-MM-DDTHH:MM:SSZ", fields[0], fields[0]));
  field = *time;
  return success();
}

Result<void> add_version(Manifest& manifest, ManifestVersion version, const LineParser& at) {
  if (manifest.versions.empty() && !version.is_base()) return at.bad("the first version line must be the base");
  if (!manifest.versions.empty() && version.is_base()) return at.bad("a second base version");
  for (const auto& earlier : manifest.versions)
    if (earlier.name == version.name) return at.bad(fmt::format("version name '{}' appears twice", version.name));
  if (!version.is_base() && version.from != manifest.versions.back().name)
    return at.bad(fmt::format("version {} is a delta from '{}', but the version before it is '{}'", version.name,
                              version.from, manifest.versions.back().name));
  manifest.versions.push_back(std::move(version));
  return success();
}

// file-index NAME INDEX SIZE SHA256: the chunk index of a delta listed above.
Result<void> add_file_index(Manifest& manifest, const std::vector<std::string_view>& fields, const LineParser& at) {
  if (fields.size() != 5) return at.bad("a file-index line is: file-index NAME INDEX SIZE SHA256");
  const auto version = std::find_if(manifest.versions.begin(), manifest.versions.end(),
                                    [&](const ManifestVersion& v) { return v.name == fields[1]; });
  if (version == manifest.versions.end() || version->is_base())
    return at.bad(fmt::format("file-index for '{}', which is not a delta listed above it", fields[1]));
  if (!version->file_index.empty()) return at.bad(fmt::format("a second file-index for '{}'", fields[1]));
  const auto size = parse_number(fields[3]);
  if (!size) return at.bad("a size is not a whole number of bytes");
  if (!is_served_path(fields[2])) return at.bad("a file is not a plain path inside the served directory");
  if (!is_sha256(fields[4])) return at.bad("a sha256 is not 64 lower-case hex digits");
  version->file_index = fields[2];
  version->file_index_size = *size;
  version->file_index_sha256 = fields[4];
  return success();
}

// content-index NAME FILE SIZE SHA256, held-table NAME FILE SIZE SHA256:
// a file of a version listed above.
Result<void> add_version_file(Manifest& manifest, const std::vector<std::string_view>& fields, const LineParser& at) {
  const std::string kind(fields[0]);
  if (fields.size() != 5) return at.bad(fmt::format("a {} line is: {} NAME FILE SIZE SHA256", kind, kind));
  const auto version = std::find_if(manifest.versions.begin(), manifest.versions.end(),
                                    [&](const ManifestVersion& v) { return v.name == fields[1]; });
  if (version == manifest.versions.end())
    return at.bad(fmt::format("{} for '{}', which is not a version listed above it", kind, fields[1]));
  ManifestVersion::SignedFile& file = kind == "content-index" ? version->content_index : version->held_table;
  if (!file.path.empty()) return at.bad(fmt::format("a second {} for '{}'", kind, fields[1]));
  const auto size = parse_number(fields[3]);
  if (!size) return at.bad("a size is not a whole number of bytes");
  if (!is_served_path(fields[2])) return at.bad("a file is not a plain path inside the served directory");
  if (!is_sha256(fields[4])) return at.bad("a sha256 is not 64 lower-case hex digits");
  file = {std::string(fields[2]), *size, std::string(fields[4])};
  return success();
}

// A hostile value in an error line: printable, and at most 64 bytes of it.
std::string shown(std::string_view text) {
  return text.size() > 64 ? printable(text.substr(0, 64)) + "..." : printable(text);
}

// A VHDX or VHD path on the NTFS partition: plain characters only (the
// payload's screen and Windows' BCD take it as it is), at most 1024 bytes.
// Returns its format, "vhdx" or "vhd" (Windows tells them by the name).
Result<std::string> check_vhdboot_path(std::string_view path, std::string_view field) {
  if (path.size() > 1024 || !all_of_chars(path, "._-/"))
    return Error{fmt::format("{} '{}': at most 1024 of A-Z a-z 0-9 . _ - and '/'", field, shown(path))};
  TROY_TRY(check_partition_path(path, field));
  const std::string_view extension = path.substr(path.rfind('.') == std::string_view::npos ? path.size() : path.rfind('.'));
  if (extension == ".vhdx" || extension == ".VHDX") return std::string("vhdx");
  if (extension == ".vhd" || extension == ".VHD") return std::string("vhd");
  return Error{fmt::format("{} '{}': not a .vhdx or .vhd file (native-VHD-boot labs take VHDX or VHD images; "
                           "Windows tells the format by the name)", field, printable(path))};
}

// layout vhdboot RULE BASE CHILD reset|keep
Result<void> parse_layout(Manifest& manifest, const std::vector<std::string_view>& fields, const LineParser& at) {
  if (manifest.vhdboot) return at.bad("a second layout line");
  if (fields.size() != 6 || fields[1] != "vhdboot")
    return at.bad("a layout line is: layout vhdboot PARTITION-RULE BASE CHILD reset|keep");
  auto layout = parse_vhdboot_layout(fields[2], fields[3], fields[4], fields[5]);
  if (!layout) return at.bad(layout.error().message);
  if (layout->partition_rule != fields[2])
    return at.bad(fmt::format("partition rule '{}' is not written as troy publish writes it ('{}')", shown(fields[2]),
                              layout->partition_rule));
  manifest.vhdboot = std::move(*layout);
  return success();
}

}  // namespace

Result<VhdBootLayout> parse_vhdboot_layout(std::string_view rule, std::string_view base, std::string_view child,
                                           std::string_view child_policy) {
  if (rule.size() > 256 || !all_of_chars(rule, "=,._-*?[]!+"))
    return Error{fmt::format("partition rule '{}': at most 256 of A-Z a-z 0-9 = , . _ - * ? [ ] ! +", shown(rule))};
  TROY_ASSIGN(parsed, parse_partition_rule(rule));
  TROY_ASSIGN(base_format, check_vhdboot_path(base, "base path"));
  TROY_ASSIGN(child_format, check_vhdboot_path(child, "child path"));
  if (base_format != child_format)
    return Error{fmt::format("child path '{}': a .{} file, but the base '{}' is .{} (a differencing child has its "
                             "parent's format)", printable(child), child_format, printable(base), base_format)};
  if (base == child) return Error{fmt::format("child path '{}': the same file as the base", printable(child))};
  if (child_policy != "reset" && child_policy != "keep")
    return Error{fmt::format("child policy '{}': reset (a fresh child at every boot) or keep", shown(child_policy))};
  return VhdBootLayout{describe(parsed), std::string(base), std::string(child), child_policy == "keep"};
}

Result<std::string> read_manifest_file(const std::string& path) {
  constexpr uint64_t kMaxBytes = 16 << 20;
  TROY_ASSIGN(file, PosixFile::open_read_only(path));
  if (file->size() > kMaxBytes) return Error{fmt::format("{}: {} bytes, too large for a manifest", path, file->size())};
  std::string text(file->size(), '\0');
  TROY_TRY(file->read_at(0, std::as_writable_bytes(std::span(text))));
  return text;
}

std::optional<int64_t> parse_utc_time(std::string_view text) {
  // 2026-10-01T08:00:00Z: digits at fixed places, nothing else.
  constexpr std::string_view kForm = "dddd-dd-ddTdd:dd:ddZ";
  if (text.size() != kForm.size()) return std::nullopt;
  for (size_t at = 0; at < kForm.size(); ++at) {
    const bool digit = text[at] >= '0' && text[at] <= '9';
    if (kForm[at] == 'd' ? !digit : text[at] != kForm[at]) return std::nullopt;
  }
  const auto number = [&](size_t at, size_t length) {
    int value = 0;
    for (size_t i = at; i < at + length; ++i) value = value * 10 + (text[i] - '0');
    return value;
  };
  std::tm parts{};
  parts.tm_year = number(0, 4) - 1900;
  parts.tm_mon = number(5, 2) - 1;
  parts.tm_mday = number(8, 2);
  parts.tm_hour = number(11, 2);
  parts.tm_min = number(14, 2);
  parts.tm_sec = number(17, 2);
  const std::tm given = parts;
  const std::time_t seconds = ::timegm(&parts);
  // timegm normalizes 2026-02-30 into March: such a date is not one.
  if (parts.tm_year != given.tm_year || parts.tm_mon != given.tm_mon || parts.tm_mday != given.tm_mday ||
      parts.tm_hour != given.tm_hour || parts.tm_min != given.tm_min || parts.tm_sec != given.tm_sec)
    return std::nullopt;
  return static_cast<int64_t>(seconds);
}

std::string format_utc_time(int64_t seconds) {
  const std::time_t time = static_cast<std::time_t>(seconds);
  std::tm parts{};
  ::gmtime_r(&time, &parts);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &parts);
  return text;
}

Result<void> manifest_freshness(const Manifest& manifest, const std::string& path, int64_t now,
                                uint64_t highest_serial, std::string& warning) {
  if (manifest.serial == 0 || !manifest.expires || !manifest.published)
    return Error{fmt::format("{}: no serial, published or expires line (signed by an older troy publish, or a "
                             "replayed old manifest); the lab admin re-signs it with troy publish --renew",
                             path)};
  if (manifest.serial < highest_serial)
    return Error{fmt::format("{}: serial {} is older than serial {} this machine already accepted (a replayed "
                             "old manifest?)",
                             path, manifest.serial, highest_serial)};
  if (now < *manifest.published) {
    warning = fmt::format("this machine's clock ({}) reads before the manifest was published ({}): its expiry "
                          "cannot be checked (is the clock set?); the serial still refuses older manifests",
                          format_utc_time(now), format_utc_time(*manifest.published));
    return success();
  }
  if (now >= *manifest.expires)
    return Error{fmt::format("{}: expired at {} (now {}); the lab admin re-signs it with troy publish --renew",
                             path, format_utc_time(*manifest.expires), format_utc_time(now))};
  return success();
}

bool valid_version_name(std::string_view name) {
  return !name.empty() && name.size() <= 64 && name.front() != '.' && all_of_chars(name, "._-");
}

Result<std::string> parse_disk_rule(std::string_view rule) {
  std::set<std::string_view> keys;
  std::string normalized;
  for (const std::string_view pair : split_spaces(rule)) {
    if (pair.empty()) continue;
    const size_t equals = pair.find('=');
    const std::string_view key = pair.substr(0, equals);
    if (equals == std::string_view::npos || (key != "size" && key != "model" && key != "serial"))
      return Error{fmt::format("disk rule '{}': '{}' is not size=BYTES, model=GLOB or serial=GLOB", rule, pair)};
    const std::string_view value = pair.substr(equals + 1);
    if (key == "size" ? !parse_number(value) : !is_rule_value(value))
      return Error{fmt::format("disk rule '{}': bad value for {} (a number of bytes for size; for model and serial "
                               "a pattern of at most 128 characters without spaces or quotes: write a space as ?)",
                               rule, key)};
    if (!keys.insert(key).second) return Error{fmt::format("disk rule '{}': {} given twice", rule, key)};
    normalized += normalized.empty() ? "" : " ";
    normalized += pair;
  }
  if (normalized.empty()) return Error{"a disk rule needs at least one of size=, model=, serial="};
  return normalized;
}

Result<Manifest> parse_manifest(std::string_view text, const std::string& path) {
  Manifest manifest;
  LineParser at{path};
  bool have_disk_size = false;
  if (text.empty() || text.back() != '\n') return Error{fmt::format("{}: empty, or its last line is cut", path)};
  size_t start = 0;
  while (start < text.size()) {
    const size_t end = text.find('\n', start);
    const std::string_view line = text.substr(start, end - start);
    start = end + 1;
    ++at.line_number;
    if (at.line_number == 1) {
      if (line != kManifestMagic) return at.bad(fmt::format("not a troy manifest (the first line is not '{}')", kManifestMagic));
      continue;
    }
    const auto fields = split_spaces(line);
    if (fields[0] == "disk-size") {
      const auto size = fields.size() == 2 ? parse_number(fields[1]) : std::nullopt;
      if (!size || *size == 0 || have_disk_size) return at.bad("disk-size must appear once, with a byte count");
      manifest.disk_size = *size;
      have_disk_size = true;
    } else if (fields[0] == "version") {
      auto version = parse_version(fields, at);
      if (!version) return version.error();
      TROY_TRY(add_version(manifest, std::move(*version), at));
    } else if (fields[0] == "file-index") {
      TROY_TRY(add_file_index(manifest, fields, at));
    } else if (fields[0] == "content-index" || fields[0] == "held-table") {
      TROY_TRY(add_version_file(manifest, fields, at));
    } else if (fields[0] == "on-foreign") {
      if (fields.size() != 2 || (fields[1] != "sync" && fields[1] != "refuse") || !manifest.on_foreign.empty())
        return at.bad("on-foreign must appear at most once, as 'on-foreign sync' or 'on-foreign refuse'");
      manifest.on_foreign = fields[1];
    } else if (fields[0] == "disk") {
      auto rule = parse_disk_rule(line.substr(std::min<size_t>(line.size(), 5)));
      if (!rule || *rule != line.substr(5)) return at.bad(rule ? "a disk rule with extra spaces" : rule.error().message);
      manifest.disk_rules.push_back(*rule);
    } else if (fields[0] == "serial" || fields[0] == "published" || fields[0] == "expires") {
      TROY_TRY(parse_freshness_line(manifest, fields, at));
    } else if (fields[0] == "layout") {
      TROY_TRY(parse_layout(manifest, fields, at));
    } else if (fields[0] == "after") {
      if (fields.size() != 2 || (fields[1] != "reboot" && fields[1] != "poweroff") || !manifest.after.empty())
        return at.bad("after must appear at most once, as 'after reboot' or 'after poweroff'");
      manifest.after = fields[1];
    } else {
      return at.bad(fmt::format("unknown record '{}'", fields[0]));
    }
  }
  if (!have_disk_size) return Error{fmt::format("{}: no disk-size line", path)};
  if (manifest.versions.empty()) return Error{fmt::format("{}: no version line", path)};
  if (manifest.published && manifest.expires && *manifest.expires <= *manifest.published)
    return Error{fmt::format("{}: expires {} is not after published {}", path, format_utc_time(*manifest.expires),
                             format_utc_time(*manifest.published))};
  return manifest;
}

std::string serialize(const Manifest& manifest) {
  std::string text = fmt::format("{}\n", kManifestMagic);
  if (manifest.serial != 0) text += fmt::format("serial {}\n", manifest.serial);
  if (manifest.published) text += fmt::format("published {}\n", format_utc_time(*manifest.published));
  if (manifest.expires) text += fmt::format("expires {}\n", format_utc_time(*manifest.expires));
  text += fmt::format("disk-size {}\n", manifest.disk_size);
  for (const auto& version : manifest.versions) {
    if (version.is_base()) {
      text += fmt::format("version {} base {}\n", version.name, version.image_id);
    } else {
      text += fmt::format("version {} delta {} {} {} {} {} {} {} {}\n", version.name, version.from, version.file,
                          version.size, version.sha256, version.fingerprint, version.fingerprint_size,
                          version.fingerprint_sha256, version.image_id);
      if (!version.file_index.empty())
        text += fmt::format("file-index {} {} {} {}\n", version.name, version.file_index, version.file_index_size,
                            version.file_index_sha256);
    }
    for (const auto& [kind, file] : {std::pair{"content-index", &version.content_index},
                                     std::pair{"held-table", &version.held_table}})
      if (!file->path.empty())
        text += fmt::format("{} {} {} {} {}\n", kind, version.name, file->path, file->size, file->sha256);
  }
  for (const auto& rule : manifest.disk_rules) text += fmt::format("disk {}\n", rule);
  if (!manifest.after.empty()) text += fmt::format("after {}\n", manifest.after);
  if (!manifest.on_foreign.empty()) text += fmt::format("on-foreign {}\n", manifest.on_foreign);
  if (manifest.vhdboot)
    text += fmt::format("layout vhdboot {} {} {} {}\n", manifest.vhdboot->partition_rule, manifest.vhdboot->base,
                        manifest.vhdboot->child, manifest.vhdboot->keep_child ? "keep" : "reset");
  return text;
}

}  // namespace troy::cli
