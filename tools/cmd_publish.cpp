// troy publish: adds a version to a lab's served directory (see manifest.h):
// the base the machines hold, or a teacher's delta, copied with its
// fingerprint; the manifest is rewritten and signed. The boot payload trusts
// nothing the manifest's signature does not cover.
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <functional>

#include <fmt/format.h>

#include "files.h"
#include "command_report.h"
#include "common.h"
#include "content.h"
#include "digest.h"
#include "chunk_index.h"
#include "fingerprint.h"
#include "http_source.h"
#include "image_output.h"
#include "io.h"
#include "manifest.h"
#include "output.h"
#include "signature.h"

namespace troy::cli {
namespace {

constexpr uint64_t kCopyChunk = 8 << 20;

struct PublishOptions {
  std::string served;
  std::string key;
  std::string name;
  std::string image;
  std::vector<std::string> disk_rules;
  std::string after;
  std::string valid_for = "30d";  // the manifest's expiry, from now
  std::string expires;            // or this time (YYYY-MM-DDTHH:MM:SSZ)
  bool renew = false;             // re-sign the manifest as it is (new serial and expiry)
  std::string on_foreign;
  std::vector<std::string> vhd_boot;  // RULE BASE CHILD: a native-VHD-boot lab (manifest.h's layout line)
  bool keep_child = false;
  ReadOptions read;
  ReportOptions report;
  // troy lab checkin publish: the image's chain as it opens it (its parent
  // is the newest version in SERVED, not a file); empty: open_chain(image).
  std::function<Result<Chain>(const Manifest&)> open_image;
};

struct FileFacts {
  uint64_t size = 0;
  std::string sha256;
};

// Copies `from` to a new file `to` (never replacing one), hashing as it goes.
Result<FileFacts> copy_hashed(const std::string& from, const std::string& to) {
  TROY_ASSIGN(source, PosixFile::open_read_only(from));
  TROY_ASSIGN(out, OutputFile::create(to, false, {from}));
  AlignedBuffer buffer(kCopyChunk);
  Sha256Hasher hasher;
  hasher.start();
  for (uint64_t at = 0; at < source->size(); at += kCopyChunk) {
    const auto piece = buffer.span().first(std::min<uint64_t>(kCopyChunk, source->size() - at));
    TROY_TRY(source->read_at(at, piece));
    hasher.update(piece);
    TROY_TRY(out.write_at(at, piece));
  }
  TROY_TRY(out.commit());
  return FileFacts{source->size(), to_hex(hasher.finish())};
}

// Writes `text` as the new file `path` (replacing it only with `replace`).
Result<FileFacts> write_text(const std::string& path, const std::string& text, bool replace) {
  TROY_ASSIGN(out, OutputFile::create(path, replace));
  const auto bytes = std::as_bytes(std::span(text));
  TROY_TRY(out.write_at(0, bytes));
  TROY_TRY(out.commit());
  return FileFacts{text.size(), to_hex(sha256(bytes))};
}

// The chunk index of the delta file just copied to `file`, written beside
// it as `index`: what `troy update` verifies each streamed piece against.
Result<FileFacts> write_file_index(const std::string& file, const std::string& index_path) {
  TROY_ASSIGN(source, PosixFile::open_read_only(file));
  TROY_ASSIGN(index, index_source(*source, kFileIndexPieceSize));
  const std::vector<std::byte> bytes = serialize(index);
  TROY_ASSIGN(out, OutputFile::create(index_path, false, {file}));
  TROY_TRY(out.write_at(0, bytes));
  TROY_TRY(out.commit());
  return FileFacts{bytes.size(), to_hex(sha256(bytes))};
}

std::string lower(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

// The served directory's manifest, after its signature verified with the
// lab's key; nullopt when there is none yet.
Result<std::optional<Manifest>> current_manifest(const std::string& served, const Key& key) {
  const std::string path = served + "/manifest";
  if (!std::filesystem::exists(path)) return std::optional<Manifest>();
  TROY_ASSIGN(text, read_manifest_file(path));
  auto signature = read_manifest_file(path + ".sig");
  if (!signature) return Error{fmt::format("{}.sig: missing or unreadable: refusing to sign over an unsigned manifest", path)};
  auto verified = verify(key, std::as_bytes(std::span(text)), *signature, path + ".sig");
  if (!verified)
    return Error{fmt::format("{}: refusing to sign over it: {}", path, verified.error().message)};
  TROY_ASSIGN(manifest, parse_manifest(text, path));
  return std::optional<Manifest>(std::move(manifest));
}

std::string extension_of(const std::string& path) {
  const std::string extension = lower(std::filesystem::path(path).extension().string());
  return extension.empty() ? ".vhd" : extension;
}

// The new delta line: IMAGE must be a child of the newest version.
Result<ManifestVersion> add_delta(const PublishOptions& options, const Manifest& manifest, const Chain& chain) {
  const Layer& top = chain.top();
  const ManifestVersion& newest = manifest.versions.back();
  const ParentLink* link = top.parent_link();
  if (link == nullptr)
    return Error{fmt::format("{}: not a differencing image; the lab already has its base ({}): publish a child of {}",
                             options.image, manifest.versions.front().name, newest.name)};
  const std::string parent_id = lower(top.format_id(link->expected_id));
  if (parent_id != newest.image_id)
    return Error{fmt::format("{}: {}: its parent id {} is not the id of the newest published version {} ({})",
                             options.image, link->expected_id_field, parent_id, newest.name, newest.image_id)};
  if (chain.virtual_size() != manifest.disk_size)
    return Error{fmt::format("{}: virtual size {} bytes, the lab's disks are {} bytes", options.image,
                             chain.virtual_size(), manifest.disk_size)};
  ManifestVersion version;
  version.name = options.name;
  version.from = newest.name;
  version.file = "versions/" + options.name + extension_of(options.image);
  version.fingerprint = "versions/" + options.name + ".fingerprint";
  version.image_id = lower(top.info().id);
  version.file_index = version.file + ".index";
  for (const std::string* file : {&version.file, &version.fingerprint, &version.file_index})
    if (std::filesystem::exists(options.served + "/" + *file))
      return Error{fmt::format("{}/{}: exists already (from an earlier, unfinished publish?); remove it or choose "
                               "another name",
                               options.served, *file)};
  std::filesystem::create_directories(options.served + "/versions");
  TROY_ASSIGN(fingerprint, make_fingerprint(chain));
  TROY_ASSIGN(fingerprint_facts, write_text(options.served + "/" + version.fingerprint, serialize(fingerprint), false));
  TROY_ASSIGN(image_facts, copy_hashed(options.image, options.served + "/" + version.file));
  version.size = image_facts.size;
  version.sha256 = image_facts.sha256;
  version.fingerprint_size = fingerprint_facts.size;
  version.fingerprint_sha256 = fingerprint_facts.sha256;
  TROY_ASSIGN(index_facts, write_file_index(options.served + "/" + version.file, options.served + "/" + version.file_index));
  version.file_index_size = index_facts.size;
  version.file_index_sha256 = index_facts.sha256;
  return version;
}

// "30d", "12h", "90m", "45s" or a number of days, as seconds.
Result<int64_t> parse_valid_for(const std::string& text) {
  const char unit = text.empty() ? 'd' : text.back();
  const std::string digits = std::string("dhms").find(unit) != std::string::npos ? text.substr(0, text.size() - 1) : text;
  const int64_t scale = unit == 'h' ? 3600 : unit == 'm' ? 60 : unit == 's' ? 1 : 86400;
  if (digits.empty() || digits.size() > 6 || digits.find_first_not_of("0123456789") != std::string::npos ||
      std::stoll(digits) == 0)
    return Error{fmt::format("--valid-for '{}': a duration such as 30d, 12h, 90m or 45s", text)};
  return std::stoll(digits) * scale;
}

// serial = the previous one + 1, published now, expires as asked: what
// lets a machine refuse a replayed older or an expired manifest.
Result<void> stamp_freshness(Manifest& manifest, const PublishOptions& options, Json& json) {
  const int64_t now = static_cast<int64_t>(std::time(nullptr));
  int64_t expires = 0;
  if (!options.expires.empty()) {
    const auto time = parse_utc_time(options.expires);
    if (!time) return Error{fmt::format("--expires '{}': not YYYY-MM-DDTHH:MM:SSZ (UTC)", options.expires)};
    if (*time <= now) return Error{fmt::format("--expires {}: not in the future", options.expires)};
    expires = *time;
  } else {
    TROY_ASSIGN(seconds, parse_valid_for(options.valid_for));
    expires = now + seconds;
  }
  manifest.serial += 1;
  manifest.published = now;
  manifest.expires = expires;
  json["serial"] = manifest.serial;
  json["expires"] = format_utc_time(expires);
  return success();
}

// The manifest first, then its signature: a machine that reads the new
// manifest with the old signature refuses it, the safe direction.
Result<void> sign_manifest(const Manifest& manifest, const Key& key, const PublishOptions& options) {
  const std::string text = serialize(manifest);
  TROY_ASSIGN(signature, sign(key, options.key, std::as_bytes(std::span(text))));
  TROY_TRY(write_text(options.served + "/manifest", text, true));
  TROY_TRY(write_text(options.served + "/manifest.sig", signature + "\n", true));
  return success();
}

// --vhd-boot RULE BASE CHILD [--keep-child]: the lab's layout line, kept by
// later publishes until given again. Its images must have BASE's format
// (VHDX for a .vhdx BASE, VHD for a .vhd one): the payload merges each delta
// into the machine's own base (lab/vhdboot.h).
Result<void> set_layout(Manifest& manifest, const PublishOptions& options, const std::string& format) {
  if (options.vhd_boot.empty()) {
    if (options.keep_child && !manifest.vhdboot)
      return Error{"--keep-child: the lab is no native-VHD-boot lab (give --vhd-boot RULE BASE CHILD)"};
    if (options.keep_child) manifest.vhdboot->keep_child = true;
  } else {
    auto layout = parse_vhdboot_layout(options.vhd_boot[0], options.vhd_boot[1], options.vhd_boot[2],
                                       options.keep_child ? "keep" : "reset");
    if (!layout) return Error{fmt::format("--vhd-boot: {}", layout.error().message)};
    manifest.vhdboot = *layout;
  }
  if (!manifest.vhdboot || format.empty()) return success();
  const std::string& base = manifest.vhdboot->base;
  const std::string extension = base.substr(base.rfind('.') + 1);
  const std::string wanted = extension == "vhd" || extension == "VHD" ? "vhd" : "vhdx";
  if (format != wanted)
    return Error{fmt::format("{}: a {} image, but the lab boots native {} ({} on partition {}): publish {} images "
                             "(troy convert)", options.image, format, wanted == "vhd" ? "VHD" : "VHDX", base,
                             manifest.vhdboot->partition_rule, wanted == "vhd" ? "VHD" : "VHDX")};
  return success();
}

// --renew: the same versions signed again with the next serial and a new
// expiry (and --disk or --after when given).
Result<std::string> renew(const PublishOptions& options, Json& json) {
  if (!options.image.empty() || !options.name.empty())
    return Error{"--renew re-signs the manifest as it is: no IMAGE and no --name"};
  TROY_TRY(check_private_key_place(options.key, options.served));
  TROY_ASSIGN(key, load_ed25519_key(options.key, false));
  TROY_ASSIGN(lock, ServedLock::take(options.served));
  TROY_ASSIGN(existing, current_manifest(options.served, key));
  if (!existing) return Error{fmt::format("{}/manifest: none to renew (publish the base first)", options.served)};
  Manifest manifest = *existing;
  for (const auto& rule : options.disk_rules) {
    if (&rule == &options.disk_rules.front()) manifest.disk_rules.clear();
    TROY_ASSIGN(normalized, parse_disk_rule(rule));
    manifest.disk_rules.push_back(normalized);
  }
  if (!options.after.empty()) manifest.after = options.after;
  TROY_TRY(set_layout(manifest, options, ""));
  TROY_TRY(stamp_freshness(manifest, options, json));
  TROY_TRY(sign_manifest(manifest, key, options));
  return fmt::format("the manifest renewed: serial {}, expires {}", manifest.serial, format_utc_time(*manifest.expires));
}

Result<std::string> publish(const PublishOptions& options, const Console& console, Json& json) {
  if (options.renew) return renew(options, json);
  if (options.image.empty()) return Error{"IMAGE is required (or --renew)"};
  if (!valid_version_name(options.name))
    return Error{fmt::format("--name '{}': 1 to 64 of A-Z a-z 0-9 . _ -, not starting with a dot", options.name)};
  std::vector<std::string> rules;
  for (const auto& rule : options.disk_rules) {
    TROY_ASSIGN(normalized, parse_disk_rule(rule));
    rules.push_back(normalized);
  }
  if (!std::filesystem::is_directory(options.served))
    return Error{fmt::format("{}: not a directory (create the served directory first)", options.served)};
  TROY_TRY(check_private_key_place(options.key, options.served));
  TROY_ASSIGN(key, load_ed25519_key(options.key, false));
  TROY_ASSIGN(lock, ServedLock::take(options.served));
  TROY_ASSIGN(existing, current_manifest(options.served, key));
  Manifest manifest = existing ? *existing : Manifest{};
  for (const auto& version : manifest.versions)
    if (version.name == options.name)
      return Error{fmt::format("--name {}: {}/manifest has that version already", options.name, options.served)};

  Diagnostics diagnostics;
  auto chain = options.open_image ? options.open_image(manifest)
                                  : open_chain(options.image, chain_options(options.read, diagnostics));
  print_warnings(diagnostics, console);
  if (!chain) return chain.error();
  TROY_TRY(set_layout(manifest, options, chain->top().info().format));
  std::string what;
  ChunkStoreStats store_stats;
  if (manifest.versions.empty()) {
    manifest.disk_size = chain->virtual_size();
    ManifestVersion base;
    base.name = options.name;
    base.image_id = lower(chain->top().info().id);
    TROY_TRY(publish_content(options.served, *chain, manifest, base, console, store_stats));
    manifest.versions.push_back(std::move(base));
    what = fmt::format("base {} ({})", options.name, short_bytes(static_cast<double>(manifest.disk_size)));
    json["kind"] = "base";
    json["from"] = nullptr;
    json["image_id"] = manifest.versions.back().image_id;
    json["disk_size_bytes"] = manifest.disk_size;
  } else {
    TROY_ASSIGN(version, add_delta(options, manifest, *chain));
    TROY_TRY(publish_content(options.served, *chain, manifest, version, console, store_stats));
    what = fmt::format("{}, a delta from {} ({})", version.name, version.from,
                       short_bytes(static_cast<double>(version.size)));
    json["kind"] = "delta";
    json["from"] = version.from;
    json["image_id"] = version.image_id;
    json["disk_size_bytes"] = manifest.disk_size;
    json["file"] = version.file;
    json["file_size_bytes"] = version.size;
    json["sha256"] = version.sha256;
    json["fingerprint"] = version.fingerprint;
    json["file_index"] = version.file_index;
    manifest.versions.push_back(std::move(version));
  }
  if (!rules.empty()) manifest.disk_rules = rules;
  if (!options.after.empty()) manifest.after = options.after;
  if (!options.on_foreign.empty()) manifest.on_foreign = options.on_foreign;
  json["content_index"] = manifest.versions.back().content_index.path;
  json["held_table"] = manifest.versions.back().held_table.path;
  json["chunks_stored"] = store_stats.stored;
  json["chunks_shared"] = store_stats.shared;
  json["bytes_stored"] = store_stats.bytes_stored;
  what += fmt::format(", {} new chunks ({}), {} already stored", store_stats.stored,
                      short_bytes(static_cast<double>(store_stats.bytes_stored)), store_stats.shared);
  if (manifest.disk_rules.empty())
    console.warn("the manifest has no disk rule; machines write nothing until one is published "
                 "(troy publish --disk 'size=... model=...'), except `troy update --disk NAME` run by hand");

  TROY_TRY(stamp_freshness(manifest, options, json));
  TROY_TRY(sign_manifest(manifest, key, options));
  return what;
}

}  // namespace

// troy lab checkin publish (cmd_checkin.cpp): a teacher's checked-in child
// published by the same code as `troy publish --dir SERVED --key KEY --name
// NAME IMAGE`, its chain opened by `open_image` over the verified manifest.
Result<std::string> publish_checked_in(const std::string& served, const std::string& key, const std::string& name,
                                       const std::string& image,
                                       const std::function<Result<Chain>(const Manifest&)>& open_image,
                                       const Console& console, Json& json) {
  PublishOptions options;
  options.served = served;
  options.key = key;
  options.name = name;
  options.image = image;
  options.open_image = open_image;
  return publish(options, console, json);
}

void register_publish(CLI::App& app, int& exit_code, const Console& console) {
  auto options = std::make_shared<PublishOptions>();
  CLI::App* command = app.add_subcommand(
      "publish",
      "Add a version to a lab's served directory: the base, or a delta (a child of the newest version), copied with "
      "its fingerprint; rewrites and signs the manifest the boot payload reads");
  command->add_option("--dir", options->served, "The served directory (manifest, manifest.sig, versions/)")->required();
  command->add_option("--key", options->key, "The lab's Ed25519 private key (PEM)")->required();
  command->add_option("--name", options->name, "The version's name, e.g. 2026-10 (required unless --renew)");
  command->add_flag("--renew", options->renew,
                    "Re-sign the manifest as it is, with the next serial and a new expiry (machines refuse an "
                    "expired manifest)");
  command->add_option("--valid-for", options->valid_for,
                      "How long machines accept the manifest: 30d (the default), 12h, 90m, 45s")
      ->capture_default_str();
  command->add_option("--expires", options->expires, "Or until this UTC time, YYYY-MM-DDTHH:MM:SSZ");
  command->add_option("--disk", options->disk_rules,
                      "Which disk of a machine to write: 'size=BYTES model=GLOB serial=GLOB' (any of the keys); "
                      "repeat for several rules; replaces the manifest's rules")
      ->allow_extra_args(false);  // one rule per --disk: IMAGE, optional with --renew, is not a rule
  command->add_option("--after", options->after,
                      "What machines do when done: reboot (into the local disk; the default) or poweroff; kept by "
                      "later publishes until given again")
      ->check(CLI::IsMember({"reboot", "poweroff"}));
  command->add_option("--on-foreign", options->on_foreign,
                      "What machines do with a disk that holds no published version (blank, another lab's, changed "
                      "since): sync (the default: write the pieces that differ) or refuse; kept until given again")
      ->check(CLI::IsMember({"sync", "refuse"}));
  command->add_option("--vhd-boot", options->vhd_boot,
                      "RULE BASE CHILD: a native-VHD-boot lab: machines merge each delta into BASE, a VHDX (or "
                      "VHD, with the lab's images of that format) on the NTFS partition RULE picks (number=N,size=BYTES,label=GLOB), and give the student a fresh "
                      "CHILD at every boot (docs/vhdboot.md); kept until given again")
      ->expected(3)
      ->allow_extra_args(false);
  command->add_flag("--keep-child", options->keep_child,
                    "Native-VHD-boot labs: keep the student's CHILD while BASE does not change (without it, "
                    "--vhd-boot resets CHILD at every boot)");
  command->add_option("IMAGE", options->image,
                      "The base image (first publish), then each differencing child (none with --renew)");
  add_read_options(*command, options->read);
  add_report_options(*command, options->report);
  command->callback([options, &exit_code, &console] {
    CommandReport report("publish", options->report, console);
    report.json()["dir"] = options->served;
    report.json()["name"] = options->name;
    report.json()["image"] = options->image;
    auto what = publish(*options, console, report.json());
    if (what && options->renew) report.summary(fmt::format("{} in {}", *what, options->served));
    else if (what) report.summary(fmt::format("published {} in {}; manifest signed", *what, options->served));
    exit_code = report.finish(what ? kExitOk : report.fail(what.error()));
  });
}

}  // namespace troy::cli
