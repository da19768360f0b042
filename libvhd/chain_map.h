// What a chain holds where, for commands that write a disk from it (apply,
// fingerprint): which ranges the upper layers of a chain change, what the
// disk looked like below them, and where the resolved disk is zeros without
// any data behind it. Everything goes through Chain and the Layer interface;
// nothing here knows a format.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "chain.h"

namespace troy {

// The ranges inside [offset, offset + length) that the layers above `level`
// hold, in offset order, each with the kind of the highest layer holding it
// (what merging them into layer `level` writes).
Result<void> extents_above(const Chain& chain, size_t level, uint64_t offset, uint64_t length,
                           std::vector<Extent>& out);

// The ranges inside [offset, offset + length) that any of the top `levels`
// layers of the chain holds (Data or Zero), merged where they touch, in
// offset order, all returned as Data extents whatever their kind. With
// levels = 1 this is the top layer's delta; with the level of an ancestor,
// everything the layers above that ancestor change.
Result<std::vector<Extent>> held_by_top_layers(const Chain& chain, size_t levels, uint64_t offset, uint64_t length);

// The disk as layer `level` and its parents present it (what the disk was
// before the layers above `level` were added), sharing the chain's layers:
// the chain must outlive the result. `level` must be a layer of the chain.
Chain chain_from_level(const Chain& chain, size_t level);

// The resolved content of [offset, offset + length), covered completely and
// in order: Data where some layer's data shows through (read it with
// Chain::read), Zero where the disk reads as zeros without any data (a Zero
// extent on top, or no layer holding the range). Adjacent pieces of the same
// kind are merged.
Result<std::vector<Extent>> resolved_map(const Chain& chain, uint64_t offset, uint64_t length);

}  // namespace troy
