// A lab's manifest: the versions `troy publish` has signed, which disk of a
// machine to write, and what the machine does when done. `troy update` (the
// classroom machine's side) reads it only after its signature verified, so
// every rule below is enforced here; every field is a plain token split on
// single spaces.
//
//   troy-manifest 1
//   disk-size BYTES                  virtual size of every version
//   version NAME base IMAGE_ID       the first version line: what machines start from
//   version NAME delta FROM FILE SIZE SHA256 FINGERPRINT FP_SIZE FP_SHA256 IMAGE_ID
//   file-index NAME INDEX SIZE SHA256  optional, after delta NAME's line: the chunk
//                                    index of its FILE (deploy/chunk_index.h), so a
//                                    machine reads the delta over HTTP piece by
//                                    piece, each verified (docs/streaming.md)
//   content-index NAME INDEX SIZE SHA256  optional, after version NAME's line: the
//                                    chunk index of the version's whole resolved disk
//                                    (deploy/chunk_index.h), what `troy update` syncs
//                                    a blank, foreign or drifted disk to, from the
//                                    chunk store SERVED/chunks (docs/chunk-index.md)
//   held-table NAME TABLE SIZE SHA256  optional, after version NAME's line: every
//                                    version's content where versions differ
//                                    (deploy/held_table.h): which version a disk holds
//   on-foreign sync|refuse           optional (default sync): what the payload does
//                                    with a disk that holds no published version
//   disk KEY=VALUE...                which disk to write: keys size, model, serial
//   layout vhdboot RULE BASE CHILD reset|keep  optional, at most once: a
//                                    native-VHD-boot lab (lab/vhdboot.h, docs/vhdboot.md):
//                                    the deltas are merged into BASE, a VHDX on the
//                                    chosen disk's NTFS partition that RULE picks
//                                    (number=N,size=BYTES,label=GLOB); CHILD, the
//                                    student's differencing child, is replaced by a
//                                    fresh one at every boot (reset) or kept while
//                                    BASE does not change (keep)
//   after reboot|poweroff            optional: what the payload does when done
//                                    (default reboot; a troy.then=poweroff on
//                                    the kernel command line also powers off)
//   serial N                         monotonic: each publish signs serial+1
//   published YYYY-MM-DDTHH:MM:SSZ   when it was signed (UTC)
//   expires YYYY-MM-DDTHH:MM:SSZ     after this the payload refuses it
//
// serial, published and expires (each at most once) make a replayed old
// manifest detectable: the payload keeps the highest serial it accepted
// (machine_state.h) and refuses lower ones, and refuses an expired manifest
// (manifest_freshness below). A manifest written before they existed parses
// with serial 0, which the payload refuses: accepting it would let anyone
// replay any pre-serial manifest forever.
//
// A delta's FROM is the NAME of the version line before it; FILE and
// FINGERPRINT are paths relative to the served directory. IMAGE_ID is the
// image's own id (VHD UniqueId, VHDX DataWriteGuid), the one its child records.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "result.h"

namespace troy::cli {

struct ManifestVersion {
  std::string name;
  std::string from;  // empty for the base
  std::string file;
  uint64_t size = 0;
  std::string sha256;
  std::string fingerprint;
  uint64_t fingerprint_size = 0;
  std::string fingerprint_sha256;
  std::string image_id;
  // The chunk index of FILE (its `file-index` line); empty in a manifest
  // published before streamed updates: the delta is then downloaded whole.
  std::string file_index;
  uint64_t file_index_size = 0;
  std::string file_index_sha256;
  // The version's content index and held table (empty path: not published).
  struct SignedFile {
    std::string path;
    uint64_t size = 0;
    std::string sha256;
  };
  SignedFile content_index;
  SignedFile held_table;
  bool is_base() const { return from.empty(); }
};

// The `layout vhdboot` line: BASE and CHILD are paths from the partition's
// root ('/' separators, A-Z a-z 0-9 . _ - only, both ending in .vhdx or
// both in .vhd: the lab's images are then of that format).
struct VhdBootLayout {
  std::string partition_rule;  // as lab/vhdboot.h's describe() writes it
  std::string base;
  std::string child;
  bool keep_child = false;
  bool operator==(const VhdBootLayout&) const = default;
};

struct Manifest {
  uint64_t disk_size = 0;
  std::vector<ManifestVersion> versions;  // the base first, then each delta in order
  std::vector<std::string> disk_rules;    // each "KEY=VALUE KEY=VALUE"
  std::string after;                      // "", "reboot" or "poweroff"
  std::string on_foreign;                 // "", "sync" (the default) or "refuse"
  std::optional<VhdBootLayout> vhdboot;   // a native-VHD-boot lab; nullopt: the disk is the image
  uint64_t serial = 0;                    // 0: no serial line (an old manifest)
  std::optional<int64_t> published;       // seconds since 1970 UTC
  std::optional<int64_t> expires;         // seconds since 1970 UTC
};

// `path` names the file in errors ("PATH: line N: ...").
Result<Manifest> parse_manifest(std::string_view text, const std::string& path);
std::string serialize(const Manifest& manifest);

// Checks a disk rule ("size=N model=GLOB serial=GLOB", any of the keys, each
// once) and returns it with single spaces.
Result<std::string> parse_disk_rule(std::string_view rule);

// Checks the fields of a `layout vhdboot` line (also what `troy publish
// --vhd-boot` is given) and returns the layout with the rule normalized; an
// error names the field.
Result<VhdBootLayout> parse_vhdboot_layout(std::string_view rule, std::string_view base, std::string_view child,
                                           std::string_view child_policy);

// A manifest or signature file's bytes (at most 16 MiB).
Result<std::string> read_manifest_file(const std::string& path);

// "2026-10-01T08:00:00Z" <-> seconds since 1970 (UTC); nullopt when not
// exactly that form.
std::optional<int64_t> parse_utc_time(std::string_view text);
std::string format_utc_time(int64_t seconds);

// Whether the payload may use a verified manifest, on a machine whose clock
// says `now` and which accepted `highest_serial` before (0: none, or no
// state kept). An error names the manifest (`path`) and why: no serial, a
// serial lower than one accepted, expired. `warning` is set (and the
// manifest accepted) when the clock reads before the manifest's own publish
// time: a machine whose clock is unset cannot judge expiry; the serial still
// refuses anything older than what it accepted.
Result<void> manifest_freshness(const Manifest& manifest, const std::string& path, int64_t now,
                                uint64_t highest_serial, std::string& warning);

// NAME: 1 to 64 of [A-Za-z0-9._-], not starting with a dot.
bool valid_version_name(std::string_view name);

}  // namespace troy::cli
