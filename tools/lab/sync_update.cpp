#include "sync_update.h"

#include <unistd.h>

#include <fmt/format.h>

#include "held_table.h"

namespace troy::cli {

bool decides_by_content(const Manifest& manifest) {
  const ManifestVersion& newest = manifest.versions.back();
  return !newest.content_index.path.empty() && !newest.held_table.path.empty();
}

PathChoice choose_path(const Manifest& manifest, std::optional<size_t> held, bool reimage) {
  const auto& versions = manifest.versions;
  const std::string& newest = versions.back().name;
  PathChoice choice;
  if (held) choice.held = versions[*held].name;
  const bool can_sync = !versions.back().content_index.path.empty();
  if (reimage) {
    choice.path = can_sync ? DiskPath::Sync : DiskPath::Refuse;
    choice.why = can_sync ? fmt::format("the server asks to reimage this machine: sync to {}", newest)
                          : fmt::format("the server asks to reimage this machine, but {} has no content index to sync "
                                        "to (published by an older troy)", newest);
    return choice;
  }
  if (held && *held + 1 == versions.size()) {
    choice.path = DiskPath::UpToDate;
    choice.why = fmt::format("holds {} exactly, the newest version", newest);
    return choice;
  }
  if (held) {
    choice.path = DiskPath::Delta;
    choice.first_to_apply = *held + 1;
    choice.why = fmt::format("holds {} exactly: applying the deltas since (faster than a sync)", choice.held);
    return choice;
  }
  if (manifest.on_foreign == "refuse") {
    choice.path = DiskPath::Refuse;
    choice.why = "holds none of the published versions (blank, another lab's disk, or changed since it was updated), "
                 "and the manifest says on-foreign refuse: nothing is written";
    return choice;
  }
  choice.path = can_sync ? DiskPath::Sync : DiskPath::Refuse;
  choice.why = can_sync ? fmt::format("holds none of the published versions exactly (blank, another lab's disk, or "
                                      "changed since it was updated): sync to {}, writing only the pieces that differ",
                                      newest)
                        : "holds none of the published versions, and there is no content index to sync to";
  return choice;
}

std::string reimage_flag_path(const std::string& mac) {
  std::string name = mac;
  for (char& c : name) c = c == ':' ? '-' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return "reimage/" + name;
}

Result<std::optional<size_t>> held_version_by_content(const ContentContext& context) {
  const ManifestVersion& newest = context.manifest.versions.back();
  TROY_ASSIGN(path, context.fetch("held table " + newest.name, newest.held_table));
  auto read = read_held_table(path);
  ::unlink(path.c_str());  // the work folder is RAM in the payload
  if (!read) return read.error();
  const HeldTable& table = *read;
  if (table.versions != context.manifest.versions.size() || table.total_size != context.manifest.disk_size)
    return Error{fmt::format("{}: covers {} versions of {} bytes, the manifest lists {} of {}", newest.held_table.path,
                             table.versions, table.total_size, context.manifest.versions.size(),
                             context.manifest.disk_size)};
  TROY_ASSIGN(disk, open_sync_disk(context.device));
  TROY_ASSIGN(hashes, hash_held_pieces(table, *disk));
  return held_by_content(table, hashes);
}

Result<SyncStats> sync_to_newest(const ContentContext& context) {
  const ManifestVersion& newest = context.manifest.versions.back();
  TROY_ASSIGN(path, context.fetch("content index " + newest.name, newest.content_index));
  auto read = read_chunk_index(path);
  ::unlink(path.c_str());
  if (!read) return read.error();
  const ChunkIndex& index = *read;
  if (index.total_size != context.manifest.disk_size)
    return Error{fmt::format("{}: indexes {} bytes, the manifest's disk size is {}", newest.content_index.path,
                             index.total_size, context.manifest.disk_size)};
  TROY_ASSIGN(disk, open_sync_disk(context.device));
  SyncRequest request;
  request.console = context.console;
  return sync_disk(index, *disk, *context.store, request);
}

}  // namespace troy::cli
