// Version management of a lab's served directory (issue 18): the versions
// with their size and how many machines hold each, a rollback, a squash.
//
// Rollback to an earlier version T is a NEW version, never an older
// manifest: a delta on top of the newest version holding, at every sector a
// version after T changed, T's content there (what `troy merge --undo`
// keeps for a merge: the old content at each sector the merge changes;
// here only sectors whose content differs from the newest are stored). It is
// published like any delta (its fingerprint, file index, content index equal
// to T's, a held table over every version) and signed with the next serial,
// so machines' rollback protection (docs/security.md) keeps refusing any
// older manifest. A disk at T holds the new version exactly already (the
// held table decides by content, newest first): nothing is written to it.
//
// Squash through S drops the versions before S from the manifest: S becomes
// the base line (its image id, its content index), the deltas after it stay
// as they are (the first one's parent is S already), and the newest version
// gets a held table over the versions that remain. A machine still at a
// dropped version holds none of the remaining versions exactly, so the
// payload syncs it to the newest by the content index, reading its disk and
// fetching only the pieces that differ (sync_update.h). That needs
// `on-foreign sync`: with `on-foreign refuse` such machines would be left
// behind, so squash refuses. The files only dropped versions used (their
// deltas, fingerprints, indexes, chunks no remaining version uses) are
// removed once the new manifest is in place.
//
// Crash safety: every new file is written under a name the current manifest
// does not list; the manifest is replaced last (manifest.sig.next, then the
// manifest, then the signature renamed into place, each atomically); a run
// cut between those two renames is completed by the next run of any of
// these commands; files are removed only once nothing listed needs them.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "console.h"
#include "manifest.h"
#include "result.h"

namespace troy::cli {

// ---- decisions (pure) ----

// Machines per reported version, from reports/MACHINE.boot (the newest
// accepted report of each machine, server.h).
struct MachineCounts {
  std::map<std::string, size_t> by_version;  // "incomplete" and unknown names too
  size_t unreadable = 0;                     // .boot files that are not a boot state
};

struct VersionRow {
  std::string name;
  std::string kind;           // "base" or "delta from NAME"
  uint64_t delta_bytes = 0;   // the delta file (what a machine at the version before downloads); 0 for the base
  std::string same_content_as;  // an earlier version with the same content (a rollback), "" when none
  size_t machines = 0;
};

std::vector<VersionRow> version_rows(const Manifest& manifest, const MachineCounts& machines);
// The table, the newest marked, then a line for machines at a version the
// manifest no longer lists (they sync) and for incomplete ones.
std::string format_versions_table(const Manifest& manifest, const std::vector<VersionRow>& rows,
                                   const MachineCounts& machines);

struct RollbackPlan {
  // Set when the newest version holds the target's content already (it is
  // the target, or a rollback to it): nothing to publish. A rerun of a
  // rollback that completed ends here, unchanged.
  std::string nothing_to_do;
  size_t target = 0;        // index of the version whose content comes back
  std::string name;         // the new version's name
  std::vector<size_t> undone;  // the deltas whose sectors the revert delta covers
};
// `name` empty: "rollback-to-TARGET" (then -2, -3... when taken).
Result<RollbackPlan> plan_rollback(const Manifest& manifest, const std::string& to, const std::string& name);

struct SquashPlan {
  size_t new_base = 0;  // index of the version that becomes the base; 0: nothing to squash
  std::vector<std::string> dropped;
};
Result<SquashPlan> plan_squash(const Manifest& manifest, const std::string& through);
// The versions from plan.new_base on, it the base line; held tables of all
// but the newest dropped (they list dropped versions); the newest's is
// written by the caller.
Manifest squashed_manifest(const Manifest& manifest, const SquashPlan& plan);

// Files of the served directory's versions/ a manifest lists.
std::vector<std::string> listed_files(const Manifest& manifest);

// ---- operations on a served directory ----

struct VersionAdminRequest {
  std::string served;
  std::string key;  // the lab's private key (rollback, squash)
  Console console;
};

// troy lab versions: the rows, and the machines counted.
struct VersionsListing {
  Manifest manifest;
  std::vector<VersionRow> rows;
  MachineCounts machines;
};
Result<VersionsListing> list_versions(const std::string& served);
Result<MachineCounts> count_machines(const std::string& served);

// troy lab rollback --to NAME [--name NEW]: returns the summary line.
Result<std::string> rollback(const VersionAdminRequest& request, const std::string& to, const std::string& name);
// troy lab squash --through NAME: returns the summary line.
Result<std::string> squash(const VersionAdminRequest& request, const std::string& through);

}  // namespace troy::cli
