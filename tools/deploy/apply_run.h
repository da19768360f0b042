// The three passes of `troy apply` over a plan's pieces: check the target
// (before anything is written), write, and re-read (--verify).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "apply_journal.h"
#include "apply_plan.h"
#include "apply_target.h"
#include "chain.h"
#include "fingerprint.h"
#include "progress.h"

namespace troy::cli {

// What a piece of the target must hold before it may be overwritten.
enum class BaseCheck {
  Parent,  // the parent's resolved content (the chain below the applied layers)
  Hashes,  // the base hashes of a fingerprint (only the delta at hand)
  None,    // anything: --full, --no-verify-base
};

struct ApplyJob {
  const Chain* image = nullptr;             // the new content (Chain::read)
  const Chain* base = nullptr;              // BaseCheck::Parent
  const Fingerprint* fingerprint = nullptr;  // BaseCheck::Hashes
  BaseCheck check = BaseCheck::None;
  uint32_t sector_size = 512;
  Console console;  // how the progress lines are drawn
};

struct Piece {
  ByteRange range;
  bool write = true;  // false: it holds the new content already
};

struct ApplyStats {
  uint64_t bytes_written = 0;  // written or zeroed
  uint64_t bytes_zeroed = 0;
  uint64_t bytes_skipped = 0;  // held the new content already (or was a hole that had to be zero)
  uint64_t torn_pieces = 0;    // neither base nor new, accepted as an interrupted write of this plan
  bool writing_started = false;
};

// Decides which pieces need writing. A piece holding the new content is
// skipped. Otherwise, unless job.check is None, every sector must hold the
// base or the new content (Parent), or every 4 KiB unit must hash to the
// fingerprint's base or new hash (Hashes, which reads only the target); a
// piece that an interrupted run of this plan may have been writing (the
// journal's [done, limit)) is accepted in Hashes mode too. Any other piece is
// refused, naming its first foreign offset. With check None only pieces below
// resumed.done are read (to skip them).
Result<void> check_target(const ApplyJob& job, const Target& target, const JournalState& resumed,
                          std::vector<Piece>& pieces, ApplyStats& stats);

// Writes the pieces marked for writing, in target order, with checkpoints
// in the journal; flushes the target and removes the journal at the end.
Result<void> write_pieces(const ApplyJob& job, Target& target, Journal& journal, const std::vector<Piece>& pieces,
                          ApplyStats& stats);

// Re-reads every piece from the target (its cache dropped first) and
// compares it with the new content; the first offset that differs, if any.
Result<std::optional<uint64_t>> verify_pieces(const ApplyJob& job, Target& target, const std::vector<Piece>& pieces);

}  // namespace troy::cli
