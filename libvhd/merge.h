// Merging the top layers of a chain into a lower one: afterwards the target
// layer, on its own, reads what the top of the chain read. Written against
// Chain (to read) and ImageUpdater (to write), never a format's internals.
//
// Lazy: only the ranges the layers above the target hold are visited, and
// within them only the sectors whose content differs from the target's are
// written (unless compare is off). Zero ranges (VHDX ZERO/UNMAPPED blocks)
// make the target read zeros. Re-running a merge over a target it has
// partly changed writes what is left and gives the same bytes: the content
// written comes from the upper layers, which the merge never changes.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "chain.h"
#include "chain_map.h"
#include "result.h"
#include "updater.h"

namespace troy {

// Totals of extents_above (chain_map.h) over the whole disk, from metadata only.
struct MergeScope {
  uint64_t data_bytes = 0;   // ranges whose content comes from a layer's data
  uint64_t zero_bytes = 0;   // ranges that must read zeros
  uint64_t runs = 0;
  uint64_t target_blocks_to_allocate = 0;  // at most; blocks of the target with no data of its own
  uint64_t target_block_size = 0;
};
// target_block_size 0: a fixed image, which allocates nothing.
Result<MergeScope> measure_merge(const Chain& chain, size_t target_level, uint64_t target_block_size);

// One run of sectors the merge changes: the new content (zeros for a zero
// range) and what the target held there.
struct Change {
  uint64_t offset = 0;
  std::span<const std::byte> new_bytes;
  std::span<const std::byte> old_bytes;  // empty when the old content was not read
  bool zeros = false;                    // the run must read zeros (new_bytes are zeros)
};

struct MergeWalk {
  size_t target_level = 1;
  bool compare = true;      // skip sectors whose content the target already holds
  bool read_old = false;    // read the target's content even without compare (undo)
  // Called as the walk advances, with the bytes of merge ranges done so far.
  std::function<void(uint64_t done)> progress;
};

struct MergeStats {
  uint64_t bytes_read = 0;       // read from the image files (new and old content)
  uint64_t bytes_changed = 0;    // in the runs reported (written, or to write)
  uint64_t bytes_zeroed = 0;     // ... of which made to read zeros
  uint64_t bytes_identical = 0;  // skipped: the target already held them
  uint64_t runs = 0;
  uint64_t blocks_allocated = 0;
};

// Visits, in offset order, every run where the target's content differs
// from the top's (every run of the merge ranges when compare is off).
// Sector granular; runs are at most a few MiB.
Result<MergeStats> walk_changes(const Chain& chain, const MergeWalk& walk,
                                const std::function<Result<void>(const Change&)>& visit);

// Writes every change into `target` (the updater of chain layer
// walk.target_level), committing as it goes, then closes it. Before the
// first change `before_first_change` runs (merge writes its journal there)
// and the target is marked as merge in progress; not at all when nothing
// differs. The mark is cleared once everything is committed.
Result<MergeStats> merge_into(const Chain& chain, const MergeWalk& walk, ImageUpdater& target,
                              const std::function<Result<void>()>& before_first_change);

}  // namespace troy
