// Native-VHD-boot labs (docs/vhdboot.md): each classroom machine boots
// Windows from BASE (a VHDX or VHD on its own NTFS partition) through CHILD, a
// differencing image that receives every write students make. Windows never
// writes BASE, so it stays exactly at a published version, and the payload
// can merge each newer delta into it:
//
//   1. find the NTFS partition by the manifest's rule (never guessed),
//      mount it read-write with ntfs-3g (why ntfs-3g: docs/vhdboot.md);
//   2. read which version BASE holds: its id (VHDX DataWriteGuid, VHD
//      footer UniqueId) is the id of the version last merged into it (the
//      merge gives it the delta's own id), so the next delta's parent id
//      proves it;
//   3. for each newer delta, downloaded beside BASE: delete CHILD (Windows
//      must never boot a half-merged base), re-link the delta to the local
//      BASE (its locators named the teacher's file), merge it into BASE
//      under troy merge's journal (a power cut at any point: the next run
//      finishes it, or `troy merge DELTA` by hand), fill any hole the
//      driver left (Windows refuses a sparse VHDX);
//   4. CHILD replaced by a fresh empty child of BASE under the same name,
//      unless it is already fresh (a machine that is current writes nothing)
//      or the lab keeps it (and BASE did not change).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "console.h"
#include "result.h"

namespace troy::cli {

// Which partition of the lab's disk holds BASE: "number=2", "size=BYTES",
// "label=GLOB" (the NTFS volume label), comma separated, each at most once,
// at least one. The partition must hold NTFS as well.
struct PartitionRule {
  std::optional<unsigned> number;
  std::optional<uint64_t> size;
  std::string label;  // shell pattern; empty: any
};
Result<PartitionRule> parse_partition_rule(std::string_view text);
std::string describe(const PartitionRule& rule);  // "number=2,label=TROY"

struct PartitionInfo {
  std::string name;  // "sda2", "nvme0n1p2"
  unsigned number = 0;
  uint64_t size = 0;  // bytes
  bool ntfs = false;  // its boot sector says NTFS
  std::string label;  // read only when a rule asks for it
};

// Reads an NTFS volume's label (ntfslabel DEVICE in the payload).
using LabelReader = std::function<Result<std::string>(const std::string& device)>;
Result<std::string> read_ntfs_label(const std::string& device);

// The partitions of `disk` as /sys/block/DISK/DISKn lists them (`block_dir`
// is /sys/block, `dev_dir` /dev: tests give a fake tree and image files).
Result<std::vector<PartitionInfo>> list_partitions(const std::string& block_dir, const std::string& dev_dir,
                                                   const std::string& disk, bool want_labels,
                                                   const LabelReader& read_label);

// The one NTFS partition the rule matches; none or several is an error that
// lists every partition of the disk.
Result<PartitionInfo> choose_partition(const std::vector<PartitionInfo>& partitions, const PartitionRule& rule,
                                       const std::string& disk);

// BASE and CHILD as the manifest names them: relative to the partition's
// root, '/' separators, no "." or ".." parts, no empty parts.
Result<void> check_partition_path(std::string_view path, std::string_view field);

// What BASE holds: its id, and the journal of an unfinished merge.
struct BaseState {
  std::string id;             // VHDX DataWriteGuid or VHD footer UniqueId, as troy info prints it
  std::string pending_delta;  // non-empty: a merge of this file into BASE is unfinished
  std::string format;         // "vhdx" or "vhd"
};
Result<BaseState> read_base_state(const std::string& base);

// A published version as the plan needs it: its name and image id.
struct VersionId {
  std::string name;
  std::string image_id;
};
// Which versions still have to be merged: those after the one whose id
// BASE carries (a pending merge counts as that version: it is finished
// first, named in `resume`). A BASE that carries no published id is
// refused: it is not a base this lab published, and merging into it would
// make something no one published.
struct BasePlan {
  size_t held = 0;                // index in `versions` of the version BASE holds (or is being merged to)
  std::vector<size_t> to_merge;   // after it, in order
  bool resume = false;            // versions[held] is being merged into BASE: finish it first
};
Result<BasePlan> plan_base(const std::vector<VersionId>& versions, const BaseState& base, const std::string& base_path);

struct MergeOutcome {
  bool resumed = false;
  uint64_t bytes_written = 0;
  uint64_t runs = 0;
  uint64_t holes_filled = 0;  // bytes rewritten so the file is not sparse
};
// Merges DELTA (a VHDX child of BASE's version, downloaded beside it) into
// BASE, crash-safe: checks that BASE's id is DELTA's parent id (or that a
// merge of DELTA is pending), re-links DELTA to BASE, checks free space,
// merges under the merge journal; BASE takes DELTA's id. Run again after a
// kill at any point, it finishes with the same bytes.
Result<MergeOutcome> merge_delta_into_base(const std::string& delta, const std::string& base, const Console& console);

// NTFS attributes of a file on an NTFS mount (ntfs-3g's
// system.ntfs_attrib_be; ntfs3's system.ntfs_attrib); nullopt elsewhere.
std::optional<uint32_t> ntfs_attributes(const std::string& path);
constexpr uint32_t kNtfsSparse = 0x200;
constexpr uint32_t kNtfsCompressed = 0x800;
constexpr uint32_t kNtfsEncrypted = 0x4000;
// Refuses a file Windows cannot boot from: compressed or encrypted.
Result<void> check_bootable_file(const std::string& path);
// A sparse file made whole: every 1 MiB range from `from` on that reads
// zeros is written with zeros (its content does not change, so a kill
// midway is harmless). Returns the bytes rewritten; 0 when not sparse.
Result<uint64_t> fill_holes(const std::string& path, uint64_t from);

// CHILD is an empty differencing image of BASE as it is now (its parent id
// is BASE's id, no block allocated) and not sparse.
bool child_is_fresh(const std::string& child, const std::string& base);
// A new empty child of BASE written under CHILD's name (atomically: a
// temporary file renamed over it), naming BASE by its relative path.
Result<void> make_fresh_child(const std::string& child, const std::string& base);
// Removes CHILD durably (no error when absent).
Result<void> remove_child(const std::string& child);

// The whole job on a mounted partition, as `troy vhdboot` and the payload
// run it. `deltas` are the files to merge, in version order, already on
// the partition; the ones BASE already holds are skipped.
struct VhdBootJob {
  std::string base;
  std::string child;
  std::vector<std::string> deltas;
  bool keep_child = false;
};
struct VhdBootOutcome {
  std::vector<std::string> merged;   // deltas merged (or finished) this run
  std::vector<std::string> skipped;  // deltas BASE already held
  bool child_reset = false;
  bool child_kept = false;
  uint64_t bytes_written = 0;
};
Result<VhdBootOutcome> run_vhdboot(const VhdBootJob& job, const Console& console);

// ---- the boot payload's side (troy update on a `layout vhdboot` manifest) ----

// The published deltas are downloaded into this folder beside BASE (on the
// NTFS partition itself: never held in RAM), as NAME.vhdx (NAME.vhd for a
// .vhd BASE), and removed once
// merged. A merge's journal names them, so a power cut mid-merge finds its
// delta there at the next boot.
std::string delta_folder(const std::string& base);
std::string delta_download_path(const std::string& base, const std::string& version_name);

// Room on the partition for downloading deltas of `delta_bytes` in all and
// merging them: the files themselves, and as much again for the blocks the
// merges add to BASE (a merge adds at most the delta's data), plus 64 MiB
// of slack for NTFS's own metadata. An error says how much is missing.
uint64_t room_needed(uint64_t delta_bytes);
Result<void> check_room(uint64_t available, uint64_t delta_bytes, const std::string& folder);
Result<uint64_t> free_bytes(const std::string& folder);

// Whether the student's child is kept: the signed manifest's `keep`, or the
// machine's own setting (troy.child=keep on the kernel command line, from
// the hosts file's +keep-child tag). Keeping is the only thing an unsigned
// command line may choose: it never makes the payload write more.
bool keeps_child(bool manifest_keeps, bool machine_keeps);

// Troy's state on a native-VHD-boot machine (machine_state.h's record) lives
// in a file beside BASE rather than after an image on the raw disk, which
// belongs to Windows' partitions here. Created as 1 MiB of written zeros
// (not sparse) when absent.
std::string state_file_path(const std::string& base);
Result<void> prepare_state_file(const std::string& path);

// Mounting the partition with ntfs-3g (nocompression: Windows refuses a
// compressed VHDX) and unmounting it; the unmount waits for ntfs-3g to
// write everything (a block device makes it a fuseblk mount).
Result<void> mount_ntfs(const std::string& device, const std::string& folder);
Result<void> unmount_ntfs(const std::string& folder);

}  // namespace troy::cli
