// The payload's path for a disk (issue 16): the delta path when the disk
// holds a published version exactly (the deltas are smaller than a sync's
// read of the whole disk), sync when it holds none (blank, another lab's
// image, changed since it was updated, an apply cut short) or when the
// server asks to reimage this machine, unless the manifest says
// `on-foreign refuse`. Which version a disk holds is decided by content
// (deploy/held_table.h), not by the deltas' fingerprints, so a delta that
// reverts an earlier one cannot make a base disk look up to date.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "console.h"
#include "manifest.h"
#include "result.h"
#include "sync.h"

namespace troy::cli {

enum class DiskPath { UpToDate, Delta, Sync, Refuse };

struct PathChoice {
  DiskPath path = DiskPath::Refuse;
  size_t first_to_apply = 0;  // Delta: the first delta to apply
  std::string held;           // the version held exactly, "" when none
  std::string why;            // one line for the screen and the report
};

// True when the manifest lets the payload decide by content: the newest
// version has a content index and a held table.
bool decides_by_content(const Manifest& manifest);

// The decision, from the version the disk holds exactly (an index into
// manifest.versions, nullopt for none) and the server's reimage flag.
PathChoice choose_path(const Manifest& manifest, std::optional<size_t> held, bool reimage);

// The served file of a machine's reimage flag: reimage/MAC (MAC in lower
// case with dashes, e.g. reimage/52-54-00-12-34-56), set by the lab admin
// with `troy lab reimage MAC`. Served read-only; it can only make a machine
// sync to the newest signed version, never write anything unsigned.
std::string reimage_flag_path(const std::string& mac);

// Where the update's pieces come from and how its files are fetched.
struct ContentContext {
  const Manifest& manifest;
  std::string device;
  // A file listed in the manifest, into the work folder, checked against
  // its size and SHA-256; returns its local path.
  std::function<Result<std::string>(const std::string& what, const ManifestVersion::SignedFile& file)> fetch;
  ChunkStore* store = nullptr;
  Console console;
  std::function<void(const std::string&)> say;
};

// Which version the disk holds exactly, by the newest version's held table.
Result<std::optional<size_t>> held_version_by_content(const ContentContext& context);

// Syncs the disk to the newest version's content index.
Result<SyncStats> sync_to_newest(const ContentContext& context);

}  // namespace troy::cli
