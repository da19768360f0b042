#include "versions_admin.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "files.h"
#include "apply_plan.h"
#include "chain.h"
#include "chunk_index.h"
#include "content.h"
#include "digest.h"
#include "fingerprint.h"
#include "held_table.h"
#include "http_source.h"
#include "image.h"
#include "io.h"
#include "output.h"
#include "progress.h"
#include "signature.h"
#include "source.h"
#include "stored_version.h"
#include "sync.h"
#include "writer.h"

namespace troy::cli {
namespace {

constexpr int64_t kDefaultValiditySeconds = 30 * 86400;
constexpr uint64_t kCompareWindow = 1 << 20;
constexpr uint64_t kMaxBootStateBytes = 64 << 10;

std::optional<size_t> find_version(const Manifest& manifest, const std::string& name) {
  for (size_t i = 0; i < manifest.versions.size(); i++)
    if (manifest.versions[i].name == name) return i;
  return std::nullopt;
}

std::string version_names(const Manifest& manifest) {
  std::string names;
  for (const auto& version : manifest.versions) names += (names.empty() ? "" : ", ") + version.name;
  return names;
}

Error no_such_version(const std::string& option, const std::string& name, const Manifest& manifest) {
  return Error{fmt::format("{} '{}': no such version in the manifest (it lists {})", option, name,
                           version_names(manifest))};
}

std::string lower(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

}  // namespace

// ---- decisions ----

std::vector<VersionRow> version_rows(const Manifest& manifest, const MachineCounts& machines) {
  std::vector<VersionRow> rows;
  for (size_t i = 0; i < manifest.versions.size(); i++) {
    const ManifestVersion& version = manifest.versions[i];
    VersionRow row;
    row.name = version.name;
    row.kind = version.is_base() ? "base" : "delta from " + version.from;
    row.delta_bytes = version.size;
    // Same content index bytes: the same disk, piece for piece.
    for (size_t k = 0; k < i && row.same_content_as.empty(); k++)
      if (!version.content_index.sha256.empty() && manifest.versions[k].content_index.sha256 == version.content_index.sha256)
        row.same_content_as = manifest.versions[k].name;
    const auto count = machines.by_version.find(version.name);
    row.machines = count == machines.by_version.end() ? 0 : count->second;
    rows.push_back(std::move(row));
  }
  return rows;
}

std::string format_versions_table(const Manifest& manifest, const std::vector<VersionRow>& rows,
                                  const MachineCounts& machines) {
  size_t name_width = 7, kind_width = 4;
  for (const auto& row : rows) {
    name_width = std::max(name_width, row.name.size());
    kind_width = std::max(kind_width, row.kind.size());
  }
  std::string text = fmt::format("{:<{}}  {:<{}}  {:>10}  {:>8}  {}\n", "VERSION", name_width, "KIND", kind_width,
                                 "DELTA", "MACHINES", "NOTE");
  for (size_t i = 0; i < rows.size(); i++) {
    const VersionRow& row = rows[i];
    std::string note;
    if (!row.same_content_as.empty()) note = "same content as " + row.same_content_as;
    if (i + 1 == rows.size()) note += std::string(note.empty() ? "" : "; ") + "newest";
    const std::string size = manifest.versions[i].is_base() ? "-" : short_bytes(static_cast<double>(row.delta_bytes));
    text += fmt::format("{:<{}}  {:<{}}  {:>10}  {:>8}  {}\n", row.name, name_width, row.kind, kind_width, size,
                        row.machines, note);
  }
  std::string unlisted;
  size_t unlisted_count = 0;
  for (const auto& [version, count] : machines.by_version) {
    if (find_version(manifest, version) || version == "incomplete") continue;
    unlisted += fmt::format("{}{} {}", unlisted.empty() ? "" : ", ", version.empty() ? "(none)" : version, count);
    unlisted_count += count;
  }
  if (unlisted_count > 0)
    text += fmt::format("{} machine(s) at a version the manifest no longer lists or none ({}): they sync to {} at "
                        "their next update (or take the deltas, when their disk holds a listed version's content)\n",
                        unlisted_count, unlisted, manifest.versions.back().name);
  if (const auto incomplete = machines.by_version.find("incomplete"); incomplete != machines.by_version.end())
    text += fmt::format("{} machine(s) with an update cut short: they sync to {} at their next update\n",
                        incomplete->second, manifest.versions.back().name);
  if (machines.unreadable > 0)
    text += fmt::format("{} report(s) under reports/ could not be read and are not counted\n", machines.unreadable);
  return text;
}

Result<RollbackPlan> plan_rollback(const Manifest& manifest, const std::string& to, const std::string& name) {
  const auto target = find_version(manifest, to);
  if (!target) return no_such_version("--to", to, manifest);
  const ManifestVersion& newest = manifest.versions.back();
  RollbackPlan plan;
  plan.target = *target;
  if (*target + 1 == manifest.versions.size()) {
    plan.nothing_to_do = fmt::format("{} is the newest version already: nothing to publish", to);
    return plan;
  }
  for (const auto& version : manifest.versions)
    if (version.content_index.path.empty())
      return Error{fmt::format("{} has no content index (published by an older troy): a rollback reads every "
                               "version's content; publish again with this troy",
                               version.name)};
  if (manifest.versions[*target].content_index.sha256 == newest.content_index.sha256) {
    plan.nothing_to_do = fmt::format("the newest version {} holds {}'s content already: nothing to publish",
                                     newest.name, to);
    return plan;
  }
  plan.name = name;
  if (plan.name.empty()) {
    plan.name = "rollback-to-" + to;
    for (int n = 2; find_version(manifest, plan.name); n++) plan.name = fmt::format("rollback-to-{}-{}", to, n);
    if (!valid_version_name(plan.name)) return Error{fmt::format("--to {}: name the new version with --name", to)};
  }
  if (!valid_version_name(plan.name))
    return Error{fmt::format("--name '{}': 1 to 64 of A-Z a-z 0-9 . _ -, not starting with a dot", plan.name)};
  if (find_version(manifest, plan.name))
    return Error{fmt::format("--name {}: the manifest has that version already", plan.name)};
  for (size_t i = *target + 1; i < manifest.versions.size(); i++) plan.undone.push_back(i);
  return plan;
}

Result<SquashPlan> plan_squash(const Manifest& manifest, const std::string& through) {
  const auto base = find_version(manifest, through);
  if (!base) return no_such_version("--through", through, manifest);
  SquashPlan plan;
  plan.new_base = *base;
  if (*base == 0) return plan;
  if (manifest.on_foreign == "refuse")
    return Error{fmt::format("the manifest says on-foreign refuse: machines still at {} would hold no published "
                             "version after the squash and be refused, not synced; publish with --on-foreign sync "
                             "first",
                             manifest.versions.front().name)};
  for (size_t i = *base; i < manifest.versions.size(); i++)
    if (manifest.versions[i].content_index.path.empty())
      return Error{fmt::format("{} has no content index (published by an older troy): machines at a squashed "
                               "version could not be synced to the newest",
                               manifest.versions[i].name)};
  for (size_t i = 0; i < *base; i++) plan.dropped.push_back(manifest.versions[i].name);
  return plan;
}

Manifest squashed_manifest(const Manifest& manifest, const SquashPlan& plan) {
  Manifest result = manifest;
  result.versions.assign(manifest.versions.begin() + static_cast<std::ptrdiff_t>(plan.new_base),
                         manifest.versions.end());
  ManifestVersion& base = result.versions.front();
  const ManifestVersion kept = base;
  base = ManifestVersion{};
  base.name = kept.name;
  base.image_id = kept.image_id;
  base.content_index = kept.content_index;
  for (auto& version : result.versions) version.held_table = {};
  return result;
}

std::vector<std::string> listed_files(const Manifest& manifest) {
  std::vector<std::string> files;
  for (const auto& version : manifest.versions)
    for (const std::string* file : {&version.file, &version.fingerprint, &version.file_index,
                                    &version.content_index.path, &version.held_table.path})
      if (!file->empty()) files.push_back(*file);
  return files;
}

// ---- the served directory ----

namespace {

std::string manifest_path(const std::string& served) { return served + "/manifest"; }

Result<ManifestVersion::SignedFile> write_signed_text(const std::string& served, const std::string& relative,
                                                      const std::string& text) {
  return write_signed(served, relative, std::as_bytes(std::span(text)));
}

// A listed file, checked against the manifest's size and SHA-256.
Result<void> check_listed(const std::string& served, const std::string& what, const std::string& relative,
                          uint64_t size, const std::string& sha) {
  const std::string path = served + "/" + relative;
  if (!file_matches(path, size, sha))
    return Error{fmt::format("{}: missing or not the {} the manifest lists (size {}, sha256 {})", path, what, size,
                             sha)};
  return success();
}

Result<ChunkIndex> read_content_index(const std::string& served, const ManifestVersion& version) {
  const auto& file = version.content_index;
  TROY_TRY(check_listed(served, "content index of " + version.name, file.path, file.size, file.sha256));
  return read_chunk_index(served + "/" + file.path);
}

// A signing cut between the manifest's rename and its signature's leaves
// manifest.sig.next: put it in place when it signs the manifest there.
Result<void> finish_interrupted_signing(const std::string& served, const Key& key) {
  const std::string next = manifest_path(served) + ".sig.next";
  if (::access(next.c_str(), F_OK) != 0) return success();
  auto text = read_manifest_file(manifest_path(served));
  auto signature = read_manifest_file(next);
  if (text && signature && verify(key, std::as_bytes(std::span(*text)), *signature, next)) {
    if (::rename(next.c_str(), (manifest_path(served) + ".sig").c_str()) != 0)
      return Error{fmt::format("{}: cannot rename it into place: {}", next, std::strerror(errno))};
    return success();
  }
  ::unlink(next.c_str());  // the manifest was never replaced: the old signature is right
  return success();
}

Result<Manifest> verified_manifest(const std::string& served, const Key& key) {
  const std::string path = manifest_path(served);
  if (!std::filesystem::exists(path))
    return Error{fmt::format("{}: no manifest (publish the base first: troy publish)", path)};
  TROY_ASSIGN(text, read_manifest_file(path));
  auto signature = read_manifest_file(path + ".sig");
  if (!signature) return Error{fmt::format("{}.sig: missing or unreadable: refusing to sign over an unsigned manifest", path)};
  auto verified = verify(key, std::as_bytes(std::span(text)), *signature, path + ".sig");
  if (!verified) return Error{fmt::format("{}: refusing to sign over it: {}", path, verified.error().message)};
  return parse_manifest(text, path);
}

// The next serial (machines refuse any lower one), published now, valid as
// long as the manifest it replaces was (30 days when it said nothing).
void stamp(Manifest& manifest) {
  const int64_t now = static_cast<int64_t>(std::time(nullptr));
  int64_t validity = kDefaultValiditySeconds;
  if (manifest.published && manifest.expires && *manifest.expires > *manifest.published)
    validity = *manifest.expires - *manifest.published;
  manifest.serial += 1;
  manifest.published = now;
  manifest.expires = now + validity;
}

// The signature beside (manifest.sig.next), then the manifest, then the
// signature renamed into place: each step atomic, and a cut between the last
// two is completed by finish_interrupted_signing.
Result<void> replace_manifest(const std::string& served, const Manifest& manifest, const Key& key,
                              const std::string& key_path) {
  const std::string text = serialize(manifest);
  TROY_ASSIGN(signature, sign(key, key_path, std::as_bytes(std::span(text))));
  const std::string path = manifest_path(served);
  TROY_TRY(write_signed_text(served, "manifest.sig.next", signature + "\n"));
  TROY_TRY(write_signed_text(served, "manifest", text));
  if (::rename((path + ".sig.next").c_str(), (path + ".sig").c_str()) != 0)
    return Error{fmt::format("{}.sig.next: cannot rename it into place: {}", path, std::strerror(errno))};
  return success();
}

struct Signer {
  ServedLock lock;  // held until the command ends
  Key key;
  Manifest manifest;
};

Result<Signer> open_for_signing(const VersionAdminRequest& request) {
  if (!std::filesystem::is_directory(request.served))
    return Error{fmt::format("{}: not a directory (the served directory)", request.served)};
  TROY_TRY(check_private_key_place(request.key, request.served));
  TROY_ASSIGN(key, load_ed25519_key(request.key, false));
  TROY_ASSIGN(lock, ServedLock::take(request.served));
  TROY_TRY(finish_interrupted_signing(request.served, key));
  TROY_ASSIGN(manifest, verified_manifest(request.served, key));
  return Signer{std::move(lock), std::move(key), std::move(manifest)};
}

// ---- rollback ----

void add_range(std::vector<ByteRange>& ranges, uint64_t offset, uint64_t length) {
  ranges.push_back(ByteRange{offset, length});
}

// The union of the sectors each undone delta holds (data or zero extents).
Result<std::vector<ByteRange>> undone_ranges(const std::string& served, const Manifest& manifest,
                                             const std::vector<size_t>& undone) {
  std::vector<ByteRange> ranges;
  for (size_t index : undone) {
    const ManifestVersion& version = manifest.versions[index];
    TROY_TRY(check_listed(served, "delta of " + version.name, version.file, version.size, version.sha256));
    Diagnostics diagnostics;
    TROY_ASSIGN(layer, open_layer(served + "/" + version.file, OpenOptions{false, &diagnostics, false}));
    std::vector<Extent> extents;
    TROY_TRY(layer->extents(0, manifest.disk_size, extents));
    for (const Extent& extent : extents) add_range(ranges, extent.offset, extent.length);
  }
  std::sort(ranges.begin(), ranges.end(), [](const ByteRange& a, const ByteRange& b) { return a.offset < b.offset; });
  std::vector<ByteRange> merged;
  for (const ByteRange& range : ranges) {
    if (!merged.empty() && range.offset <= merged.back().end())
      merged.back().length = std::max(merged.back().end(), range.end()) - merged.back().offset;
    else merged.push_back(range);
  }
  return merged;
}

struct RevertStats {
  uint64_t bytes_written = 0;
  uint64_t bytes_examined = 0;
};

// Writes `target`'s content where it differs from `newest`'s, inside `ranges`.
Result<RevertStats> write_revert(ImageWriter& writer, const std::vector<ByteRange>& ranges, const Layer& target,
                                 const Layer& newest, uint32_t sector, Progress& progress) {
  RevertStats stats;
  std::vector<std::byte> old_bytes(kCompareWindow), new_bytes(kCompareWindow);
  for (const ByteRange& range : ranges) {
    for (uint64_t at = range.offset; at < range.end(); at += kCompareWindow) {
      const uint64_t length = std::min<uint64_t>(kCompareWindow, range.end() - at);
      const auto wanted = std::span(old_bytes).first(length);
      const auto held = std::span(new_bytes).first(length);
      TROY_TRY(target.read(at, wanted));
      TROY_TRY(newest.read(at, held));
      // Sector by sector (a range's last one may be cut by the window).
      const auto differs = [&](uint64_t at_byte) {
        return std::memcmp(wanted.data() + at_byte, held.data() + at_byte, std::min<uint64_t>(sector, length - at_byte)) != 0;
      };
      for (uint64_t s = 0; s < length;) {
        if (!differs(s)) {
          s += std::min<uint64_t>(sector, length - s);
          continue;
        }
        uint64_t end = std::min<uint64_t>(s + sector, length);
        while (end < length && differs(end)) end = std::min<uint64_t>(end + sector, length);
        TROY_TRY(writer.write(at + s, wanted.subspan(s, end - s)));
        stats.bytes_written += end - s;
        s = end;
      }
      stats.bytes_examined += length;
      progress.update(stats.bytes_examined);
    }
  }
  return stats;
}

std::string extension_of(const std::string& path) {
  const std::string extension = lower(std::filesystem::path(path).extension().string());
  return extension.empty() ? ".vhd" : extension;
}

// The revert delta at versions/NAME.EXT, a child of the newest version's
// delta file (its format, its sector size).
Result<RevertStats> make_revert_delta(const std::string& served, const Manifest& manifest, const RollbackPlan& plan,
                                      const std::string& relative, const Layer& target, const Layer& newest_content,
                                      const Console& console) {
  const ManifestVersion& newest = manifest.versions.back();
  Diagnostics diagnostics;
  TROY_ASSIGN(newest_layer, open_layer(served + "/" + newest.file, OpenOptions{false, &diagnostics, false}));
  if (lower(newest_layer->info().id) != newest.image_id)
    return Error{fmt::format("{}/{}: its id {} is not the manifest's {} for {}", served, newest.file,
                             newest_layer->info().id, newest.image_id, newest.name)};
  TROY_ASSIGN(ranges, undone_ranges(served, manifest, plan.undone));
  ImageSpec spec;
  spec.format = newest_layer->info().format == "vhd" ? ImageFormat::Vhd : ImageFormat::Vhdx;
  spec.type = ImageType::Differencing;
  spec.virtual_size = manifest.disk_size;
  spec.logical_sector_size = newest_layer->logical_sector_size();
  spec.block_size = newest_layer->info().block_size;  // as the admin's deltas are made
  struct stat parent_stat {};
  ::stat((served + "/" + newest.file).c_str(), &parent_stat);
  const std::string absolute = std::filesystem::absolute(served + "/" + newest.file).lexically_normal().string();
  spec.parent = ParentRecord{newest_layer->link_id(), std::filesystem::path(newest.file).filename().string(), absolute,
                             static_cast<int64_t>(parent_stat.st_mtime)};
  TROY_ASSIGN(complete, complete_spec(spec));
  TROY_ASSIGN(out, OutputFile::create(served + "/" + relative, /*overwrite=*/true));
  TROY_ASSIGN(writer, create_image(complete, out));
  uint64_t total = 0;
  for (const auto& range : ranges) total += range.length;
  Progress progress("comparing", total, console);
  TROY_ASSIGN(stats, write_revert(*writer, ranges, target, newest_content, complete.logical_sector_size, progress));
  progress.finish();
  if (stats.bytes_written == 0)
    return Error{fmt::format("--to {}: the newest version {} holds {}'s content at every sector the later versions "
                             "changed: nothing to roll back",
                             manifest.versions[plan.target].name, newest.name, manifest.versions[plan.target].name)};
  TROY_TRY(writer->finish());
  TROY_TRY(out.commit());
  return stats;
}

Result<ManifestVersion::SignedFile> write_file_index(const std::string& served, const std::string& file) {
  TROY_ASSIGN(source, PosixFile::open_read_only(served + "/" + file));
  TROY_ASSIGN(index, index_source(*source, kFileIndexPieceSize));
  return write_signed(served, file + ".index", serialize(index));
}

Result<ManifestVersion::SignedFile> write_held_table(const std::string& served, const Manifest& manifest,
                                                     const std::string& relative) {
  std::vector<ChunkIndex> indexes;
  std::vector<std::string> names;
  for (const auto& version : manifest.versions) {
    TROY_ASSIGN(index, read_content_index(served, version));
    indexes.push_back(std::move(index));
    names.push_back(version.name);
  }
  TROY_ASSIGN(table, make_held_table(indexes, names));
  return write_signed(served, relative, serialize(table));
}

Result<std::unique_ptr<Layer>> stored_layer(const std::string& served, const ManifestVersion& version) {
  TROY_ASSIGN(index, read_content_index(served, version));
  return open_stored_version(served + "/" + version.content_index.path, std::move(index), served);
}

// ---- squash: what only dropped versions used ----

struct Sweep {
  size_t files = 0;
  size_t chunks = 0;
  uint64_t bytes = 0;
};

void remove_counted(const std::filesystem::path& path, Sweep& sweep, size_t& count) {
  std::error_code error;
  const uint64_t size = std::filesystem::file_size(path, error);
  if (std::filesystem::remove(path, error)) {
    count++;
    if (size != static_cast<uint64_t>(-1)) sweep.bytes += size;
  }
}

bool is_hex_sha(const std::string& name) {
  return name.size() == 64 && name.find_first_not_of("0123456789abcdef") == std::string::npos;
}

// Files under versions/ the manifest does not list, and chunks no listed
// content index uses. Run only after the manifest that stopped listing them
// is in place.
Result<Sweep> sweep_unlisted(const std::string& served, const Manifest& manifest) {
  Sweep sweep;
  std::set<std::string> listed;
  for (const auto& file : listed_files(manifest)) listed.insert(std::filesystem::path(file).filename().string());
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(served + "/versions", error))
    if (entry.is_regular_file(error) && !listed.contains(entry.path().filename().string()))
      remove_counted(entry.path(), sweep, sweep.files);
  std::set<std::string> used;
  for (const auto& version : manifest.versions) {
    TROY_ASSIGN(index, read_content_index(served, version));
    for (size_t i = 0; i < index.piece_count(); i++)
      if (!index.is_zero(i)) used.insert(to_hex(index.pieces[i]));
  }
  for (const auto& folder : std::filesystem::directory_iterator(served + "/chunks", error)) {
    if (!folder.is_directory(error)) continue;
    for (const auto& entry : std::filesystem::directory_iterator(folder.path(), error)) {
      std::string name = entry.path().filename().string();
      if (name.ends_with(".units")) name.resize(name.size() - 6);
      if (is_hex_sha(name) && !used.contains(name))
        remove_counted(entry.path(), sweep, name == entry.path().filename().string() ? sweep.chunks : sweep.files);
    }
  }
  return sweep;
}

std::string describe(const Sweep& sweep) {
  if (sweep.files == 0 && sweep.chunks == 0) return "no file to remove";
  return fmt::format("removed {} chunk(s) and {} other file(s) only dropped versions used ({})", sweep.chunks,
                     sweep.files, short_bytes(static_cast<double>(sweep.bytes)));
}

}  // namespace

Result<MachineCounts> count_machines(const std::string& served) {
  MachineCounts counts;
  const std::string reports = served + "/reports";
  std::error_code error;
  if (!std::filesystem::is_directory(reports, error)) return counts;
  for (const auto& entry : std::filesystem::directory_iterator(reports, error)) {
    std::error_code kind;
    if (entry.path().extension() != ".boot" || !entry.is_regular_file(kind)) continue;
    std::ifstream file(entry.path());
    std::string text(kMaxBootStateBytes, '\0');
    file.read(text.data(), static_cast<std::streamsize>(text.size()));
    text.resize(static_cast<size_t>(file.gcount()));
    const auto state = nlohmann::json::parse(text, nullptr, false);
    const auto version = state.is_object() ? state.find("version") : state.end();
    if (version == state.end() || !version->is_string()) {
      counts.unreadable++;
      continue;
    }
    counts.by_version[version->get<std::string>()]++;
  }
  if (error) return Error{fmt::format("{}: cannot list: {}", reports, error.message())};
  return counts;
}

Result<VersionsListing> list_versions(const std::string& served) {
  const std::string path = manifest_path(served);
  if (!std::filesystem::exists(path))
    return Error{fmt::format("{}: no manifest (publish the base first: troy publish)", path)};
  TROY_ASSIGN(text, read_manifest_file(path));
  TROY_ASSIGN(manifest, parse_manifest(text, path));
  TROY_ASSIGN(machines, count_machines(served));
  auto rows = version_rows(manifest, machines);
  return VersionsListing{std::move(manifest), std::move(rows), std::move(machines)};
}

Result<std::string> rollback(const VersionAdminRequest& request, const std::string& to, const std::string& name) {
  TROY_ASSIGN(signer, open_for_signing(request));
  Manifest manifest = signer.manifest;
  TROY_ASSIGN(plan, plan_rollback(manifest, to, name));
  if (!plan.nothing_to_do.empty()) return plan.nothing_to_do;
  // Copies: the new version is pushed onto manifest.versions below.
  const ManifestVersion target = manifest.versions[plan.target];
  const ManifestVersion newest = manifest.versions.back();
  const std::string& served = request.served;
  std::filesystem::create_directories(served + "/versions");

  ManifestVersion version;
  version.name = plan.name;
  version.from = newest.name;
  version.file = "versions/" + plan.name + extension_of(newest.file);
  version.fingerprint = "versions/" + plan.name + ".fingerprint";
  TROY_ASSIGN(target_layer, stored_layer(served, target));
  TROY_ASSIGN(newest_content, stored_layer(served, newest));
  TROY_ASSIGN(stats, make_revert_delta(served, manifest, plan, version.file, *target_layer, *newest_content,
                                       request.console));

  // Its fingerprint: over the newest version's content, as the payload's
  // apply checks the disk against it.
  Diagnostics diagnostics;
  TROY_ASSIGN(delta_layer, open_layer(served + "/" + version.file, OpenOptions{false, &diagnostics, false}));
  version.image_id = lower(delta_layer->info().id);
  std::vector<std::unique_ptr<Layer>> layers;
  layers.push_back(std::move(delta_layer));
  layers.push_back(std::move(newest_content));
  const Chain chain(std::move(layers));
  TROY_ASSIGN(fingerprint, make_fingerprint(chain));
  TROY_ASSIGN(fingerprint_file, write_signed_text(served, version.fingerprint, serialize(fingerprint)));
  version.fingerprint_size = fingerprint_file.size;
  version.fingerprint_sha256 = fingerprint_file.sha256;
  TROY_ASSIGN(delta_source, PosixFile::open_read_only(served + "/" + version.file));
  version.size = delta_source->size();
  {
    Sha256Hasher hasher;
    hasher.start();
    std::vector<std::byte> buffer(kCompareWindow);
    for (uint64_t at = 0; at < version.size; at += kCompareWindow) {
      const auto piece = std::span(buffer).first(std::min<uint64_t>(kCompareWindow, version.size - at));
      TROY_TRY(delta_source->read_at(at, piece));
      hasher.update(piece);
    }
    version.sha256 = to_hex(hasher.finish());
  }
  TROY_ASSIGN(file_index, write_file_index(served, version.file));
  version.file_index = file_index.path;
  version.file_index_size = file_index.size;
  version.file_index_sha256 = file_index.sha256;

  // Its content is the target's: the same content index, a held table over all.
  TROY_ASSIGN(target_index, read_content_index(served, target));
  version.content_index = {};
  TROY_ASSIGN(content_file, write_signed(served, "versions/" + plan.name + ".cidx", serialize(target_index)));
  version.content_index = content_file;
  manifest.versions.push_back(version);
  TROY_ASSIGN(held_file, write_held_table(served, manifest, "versions/" + plan.name + ".held"));
  manifest.versions.back().held_table = held_file;

  stamp(manifest);
  TROY_TRY(replace_manifest(served, manifest, signer.key, request.key));
  return fmt::format("published {}, a delta from {} that puts back {}'s content where {} changed it ({} of sectors, "
                     "a {} file); manifest signed, serial {}. Machines at {} keep their disk as it is, the others "
                     "apply it at their next update. The next version you publish is a child of {}/{} (its parent "
                     "is {})",
                     plan.name, newest.name, target.name, plan.undone.size() == 1 ? newest.name : "later versions",
                     short_bytes(static_cast<double>(stats.bytes_written)),
                     short_bytes(static_cast<double>(version.size)), manifest.serial, target.name, served,
                     version.file, newest.file);
}

Result<std::string> squash(const VersionAdminRequest& request, const std::string& through) {
  TROY_ASSIGN(signer, open_for_signing(request));
  const std::string& served = request.served;
  TROY_ASSIGN(plan, plan_squash(signer.manifest, through));
  if (plan.new_base == 0) {
    // Nothing to squash; a squash cut after its manifest went in place left
    // files to remove.
    TROY_ASSIGN(sweep, sweep_unlisted(served, signer.manifest));
    return fmt::format("{} is the base already: nothing to squash; {}", through, describe(sweep));
  }
  Manifest manifest = squashed_manifest(signer.manifest, plan);
  stamp(manifest);
  ManifestVersion& newest = manifest.versions.back();
  TROY_ASSIGN(held, write_held_table(served, manifest,
                                     fmt::format("versions/{}.s{}.held", newest.name, manifest.serial)));
  newest.held_table = held;
  TROY_TRY(replace_manifest(served, manifest, signer.key, request.key));
  TROY_ASSIGN(sweep, sweep_unlisted(served, manifest));
  // A dropped version whose content a remaining one has (a rollback's
  // target) is still recognised by the held table: no sync for those.
  std::string dropped, synced;
  for (size_t i = 0; i < plan.new_base; i++) {
    const ManifestVersion& version = signer.manifest.versions[i];
    dropped += (dropped.empty() ? "" : ", ") + version.name;
    const bool recognised = std::any_of(manifest.versions.begin(), manifest.versions.end(), [&](const auto& kept) {
      return kept.content_index.sha256 == version.content_index.sha256;
    });
    if (!recognised) synced += (synced.empty() ? "" : ", ") + version.name;
  }
  const std::string machines = synced.empty()
                                   ? "Machines at those versions hold a remaining version's content: no sync needed"
                                   : fmt::format("Machines still at {} sync to {} at their next update", synced,
                                                 manifest.versions.back().name);
  return fmt::format("squashed {} into the base {}; manifest signed, serial {}. {}; {}", dropped, through,
                     manifest.serial, machines, describe(sweep));
}

}  // namespace troy::cli
