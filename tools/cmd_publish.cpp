// troy publish: adds a version to a lab's served directory (see manifest.h):
// the base the machines hold, or a teacher's delta, copied with its
// fingerprint; the manifest is rewritten and signed. The boot payload trusts
// nothing the manifest's signature does not cover.
#include <sys/stat.h>

#include <chrono>
#include <filesystem>

#include <fmt/format.h>

#include "command_report.h"
#include "common.h"
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
  ReadOptions read;
  ReportOptions report;
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

Result<std::string> publish(const PublishOptions& options, const Console& console, Json& json) {
  if (!valid_version_name(options.name))
    return Error{fmt::format("--name '{}': 1 to 64 of A-Z a-z 0-9 . _ -, not starting with a dot", options.name)};
  std::vector<std::string> rules;
  for (const auto& rule : options.disk_rules) {
    TROY_ASSIGN(normalized, parse_disk_rule(rule));
    rules.push_back(normalized);
  }
  if (!std::filesystem::is_directory(options.served))
    return Error{fmt::format("{}: not a directory (create the served directory first)", options.served)};
  TROY_ASSIGN(key, load_ed25519_key(options.key, false));
  TROY_ASSIGN(existing, current_manifest(options.served, key));
  Manifest manifest = existing ? *existing : Manifest{};
  for (const auto& version : manifest.versions)
    if (version.name == options.name)
      return Error{fmt::format("--name {}: {}/manifest has that version already", options.name, options.served)};

  Diagnostics diagnostics;
  auto chain = open_chain(options.image, chain_options(options.read, diagnostics));
  print_warnings(diagnostics, console);
  if (!chain) return chain.error();
  std::string what;
  if (manifest.versions.empty()) {
    manifest.disk_size = chain->virtual_size();
    ManifestVersion base;
    base.name = options.name;
    base.image_id = lower(chain->top().info().id);
    manifest.versions.push_back(std::move(base));
    what = fmt::format("base {} ({})", options.name, short_bytes(static_cast<double>(manifest.disk_size)));
    json["kind"] = "base";
    json["from"] = nullptr;
    json["image_id"] = manifest.versions.back().image_id;
    json["disk_size_bytes"] = manifest.disk_size;
  } else {
    TROY_ASSIGN(version, add_delta(options, manifest, *chain));
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
  if (manifest.disk_rules.empty())
    console.warn("the manifest has no disk rule; machines write nothing until one is published "
                 "(troy publish --disk 'size=... model=...'), except `troy update --disk NAME` run by hand");

  // The manifest first, then its signature: a machine that reads the new
  // manifest with the old signature refuses it, the safe direction.
  const std::string text = serialize(manifest);
  TROY_ASSIGN(signature, sign(key, options.key, std::as_bytes(std::span(text))));
  TROY_TRY(write_text(options.served + "/manifest", text, true));
  TROY_TRY(write_text(options.served + "/manifest.sig", signature + "\n", true));
  return what;
}

}  // namespace

void register_publish(CLI::App& app, int& exit_code, const Console& console) {
  auto options = std::make_shared<PublishOptions>();
  CLI::App* command = app.add_subcommand(
      "publish",
      "Add a version to a lab's served directory: the base, or a delta (a child of the newest version), copied with "
      "its fingerprint; rewrites and signs the manifest the boot payload reads");
  command->add_option("--dir", options->served, "The served directory (manifest, manifest.sig, versions/)")->required();
  command->add_option("--key", options->key, "The lab's Ed25519 private key (PEM)")->required();
  command->add_option("--name", options->name, "The version's name, e.g. 2026-10")->required();
  command->add_option("--disk", options->disk_rules,
                      "Which disk of a machine to write: 'size=BYTES model=GLOB serial=GLOB' (any of the keys); "
                      "repeat for several rules; replaces the manifest's rules");
  command->add_option("--after", options->after,
                      "What machines do when done: reboot (into the local disk; the default) or poweroff; kept by "
                      "later publishes until given again")
      ->check(CLI::IsMember({"reboot", "poweroff"}));
  command->add_option("IMAGE", options->image, "The base image (first publish), then each differencing child")
      ->required();
  add_read_options(*command, options->read);
  add_report_options(*command, options->report);
  command->callback([options, &exit_code, &console] {
    CommandReport report("publish", options->report, console);
    report.json()["dir"] = options->served;
    report.json()["name"] = options->name;
    report.json()["image"] = options->image;
    auto what = publish(*options, console, report.json());
    if (what) report.summary(fmt::format("published {} in {}; manifest signed", *what, options->served));
    exit_code = report.finish(what ? kExitOk : report.fail(what.error()));
  });
}

}  // namespace troy::cli
