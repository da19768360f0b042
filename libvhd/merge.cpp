#include "merge.h"

#include <algorithm>
#include <cstring>
#include <set>

#include "chain_map.h"
#include "layout.h"

namespace troy {
namespace {

// The disk is walked in windows, so memory stays flat in the virtual size.
constexpr uint64_t kWindow = 256ull << 20;
// The unit of reading and comparing: large I/Os, a bounded buffer.
constexpr uint64_t kPiece = 4ull << 20;
// Bytes written between commits: what a crash can cost the re-run at most.
constexpr uint64_t kCommitEvery = 256ull << 20;

// Reports the runs of whole sectors where `fresh` and `old` differ.
Result<void> visit_differences(uint64_t offset, std::span<const std::byte> fresh, std::span<const std::byte> old,
                               bool zeros, uint64_t sector, MergeStats& stats,
                               const std::function<Result<void>(const Change&)>& visit) {
  const uint64_t sectors = fresh.size() / sector;
  auto differs = [&](uint64_t s) { return std::memcmp(fresh.data() + s * sector, old.data() + s * sector, sector) != 0; };
  for (uint64_t s = 0; s < sectors;) {
    if (!differs(s)) {
      stats.bytes_identical += sector;
      s++;
      continue;
    }
    const uint64_t first = s;
    while (s < sectors && differs(s)) s++;
    const uint64_t from = first * sector;
    const uint64_t length = (s - first) * sector;
    stats.runs++;
    stats.bytes_changed += length;
    if (zeros) stats.bytes_zeroed += length;
    TROY_TRY(visit(Change{offset + from, fresh.subspan(from, length), old.subspan(from, length), zeros}));
  }
  return success();
}

}  // namespace

Result<MergeScope> measure_merge(const Chain& chain, size_t target_level, uint64_t target_block_size) {
  MergeScope scope;
  scope.target_block_size = target_block_size;
  const Layer& target = *chain.layers()[target_level];
  const bool allocates = target_block_size != 0;  // 0: a fixed image, which never allocates
  for (uint64_t window = 0; window < chain.virtual_size(); window += kWindow) {
    const uint64_t length = std::min(kWindow, chain.virtual_size() - window);
    std::vector<Extent> extents;
    TROY_TRY(extents_above(chain, target_level, window, length, extents));
    std::vector<Extent> target_extents;
    TROY_TRY(target.extents(window, length, target_extents));
    std::set<uint64_t> target_holds;
    for (const Extent& extent : target_extents)
      if (allocates)
      if (extent.kind == ExtentKind::Data)
        for (uint64_t b = extent.offset / target_block_size; b * target_block_size < extent.end(); b++) target_holds.insert(b);
    std::set<uint64_t> to_allocate;
    for (const Extent& extent : extents) {
      scope.runs++;
      (extent.kind == ExtentKind::Data ? scope.data_bytes : scope.zero_bytes) += extent.length;
      if (extent.kind != ExtentKind::Data || !allocates) continue;
      for (uint64_t b = extent.offset / target_block_size; b * target_block_size < extent.end(); b++)
        if (!target_holds.count(b)) to_allocate.insert(b);
    }
    scope.target_blocks_to_allocate += to_allocate.size();
  }
  return scope;
}

Result<MergeStats> walk_changes(const Chain& chain, const MergeWalk& walk,
                                const std::function<Result<void>(const Change&)>& visit) {
  MergeStats stats;
  const uint64_t sector = chain.logical_sector_size();
  const bool read_old = walk.compare || walk.read_old;
  std::vector<std::byte> fresh_buffer(kPiece);
  std::vector<std::byte> old_buffer(read_old ? kPiece : 0);
  uint64_t done = 0;
  for (uint64_t window = 0; window < chain.virtual_size(); window += kWindow) {
    std::vector<Extent> extents;
    TROY_TRY(extents_above(chain, walk.target_level, window, std::min(kWindow, chain.virtual_size() - window), extents));
    for (const Extent& extent : extents) {
      const bool zeros = extent.kind == ExtentKind::Zero;
      for (uint64_t at = extent.offset; at < extent.end();) {
        // Pieces end on kPiece boundaries of the disk: large, aligned I/Os.
        const uint64_t length = std::min(extent.end(), (at / kPiece + 1) * kPiece) - at;
        const auto fresh = std::span(fresh_buffer).first(length);
        if (zeros) std::memset(fresh.data(), 0, length);
        else TROY_TRY(chain.read(at, fresh));
        std::span<std::byte> old;
        if (read_old) {
          old = std::span(old_buffer).first(length);
          TROY_TRY(chain.read_from(walk.target_level, at, old));
        }
        stats.bytes_read += (zeros ? 0 : length) + old.size();
        if (walk.compare) {
          TROY_TRY(visit_differences(at, fresh, old, zeros, sector, stats, visit));
        } else {
          stats.runs++;
          stats.bytes_changed += length;
          if (zeros) stats.bytes_zeroed += length;
          TROY_TRY(visit(Change{at, fresh, old, zeros}));
        }
        at += length;
        done += length;
        if (walk.progress) walk.progress(done);
      }
    }
  }
  return stats;
}

Result<MergeStats> merge_into(const Chain& chain, const MergeWalk& walk, ImageUpdater& target,
                              const std::function<Result<void>()>& before_first_change) {
  bool started = false;
  uint64_t since_commit = 0;
  auto write = [&](const Change& change) -> Result<void> {
    if (!started) {
      TROY_TRY(before_first_change());
      TROY_TRY(target.set_merge_in_progress(true));
      started = true;
    }
    if (change.zeros) TROY_TRY(target.write_zeros(change.offset, change.new_bytes.size()));
    else TROY_TRY(target.write(change.offset, change.new_bytes));
    since_commit += change.new_bytes.size();
    if (since_commit >= kCommitEvery) {
      TROY_TRY(target.commit());
      since_commit = 0;
    }
    return success();
  };
  TROY_ASSIGN(stats, walk_changes(chain, walk, write));
  // Also when a re-run found nothing left to write: the mark of the
  // interrupted run goes, after the data is committed.
  TROY_TRY(target.set_merge_in_progress(false));
  TROY_TRY(target.close());
  stats.blocks_allocated = target.blocks_allocated();
  return stats;
}

}  // namespace troy
