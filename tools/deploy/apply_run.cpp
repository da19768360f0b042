#include "apply_run.h"

#include <signal.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

#include "chain_map.h"
#include "read_ahead.h"
#include "write_queue.h"

namespace troy::cli {
namespace {

constexpr uint64_t kIoSize = 4 << 20;                // one write: large, and a multiple of the piece grid
constexpr size_t kQueueDepth = 8;                    // 32 MiB in flight (fewer on a small machine)
constexpr uint64_t kCheckpointBytes = 512ull << 20;  // written between two journal records
constexpr uint64_t kMinZeroRun = 64 << 10;           // shorter zero runs are written with their neighbours

// The first sector of `target` that holds neither `base` nor `updated`.
std::optional<size_t> first_foreign_sector(std::span<const std::byte> target, std::span<const std::byte> base,
                                           std::span<const std::byte> updated, uint32_t sector) {
  for (size_t at = 0; at < target.size(); at += sector) {
    const size_t length = std::min<size_t>(sector, target.size() - at);
    if (std::memcmp(target.data() + at, base.data() + at, length) != 0 &&
        std::memcmp(target.data() + at, updated.data() + at, length) != 0)
      return at;
  }
  return std::nullopt;
}

const FingerprintPiece* fingerprint_piece(const Fingerprint& fingerprint, const ByteRange& range) {
  const auto found = std::lower_bound(fingerprint.pieces.begin(), fingerprint.pieces.end(), range.offset,
                                      [](const FingerprintPiece& piece, uint64_t offset) { return piece.range.offset < offset; });
  if (found == fingerprint.pieces.end() || found->range.offset != range.offset || found->range.length != range.length)
    return nullptr;
  return &*found;
}

Error foreign_content(const Target& target, uint64_t offset, const std::string& what) {
  return Error{fmt::format("{}: offset {} holds neither {} nor the image's new content: not the disk this delta was "
                           "made for; nothing was written",
                           target.path(), offset, what)};
}

// Hooks for the e2e tests only, read from the environment:
// TROY_TEST_KILL_AFTER_BYTES=N kills the process (SIGKILL, as kill -9) once N
// bytes of writes have finished, to resume from a chosen point (strace
// cannot stop io_uring writes); TROY_TEST_CHECKPOINT_BYTES=N records the
// journal every N bytes, so that small test disks have several checkpoints.
uint64_t test_setting(const char* name, uint64_t otherwise) {
  const char* value = std::getenv(name);
  return value == nullptr ? otherwise : std::strtoull(value, nullptr, 10);
}

// Write pieces joined into large writes: contiguous, at most kIoSize.
std::vector<ByteRange> coalesce(const std::vector<Piece>& pieces) {
  std::vector<ByteRange> ios;
  for (const Piece& piece : pieces) {
    if (!piece.write) continue;
    if (!ios.empty() && ios.back().end() == piece.range.offset && ios.back().length + piece.range.length <= kIoSize)
      ios.back().length += piece.range.length;
    else ios.push_back(piece.range);
  }
  return ios;
}

// The index past the last write of the checkpoint window starting at `first`.
size_t window_end(const std::vector<ByteRange>& ios, size_t first, uint64_t checkpoint_bytes) {
  uint64_t bytes = 0;
  size_t end = first;
  while (end < ios.size() && bytes < checkpoint_bytes) bytes += ios[end++].length;
  return end;
}

// An I/O cut into runs to write and runs to zero: zero runs are the ranges
// that resolve to zeros without data, when large and aligned enough to be
// worth a zeroing call instead of a write; everything else is written.
struct Run {
  ByteRange range;
  bool zero = false;
};

Result<std::vector<Run>> runs_of(const Chain& image, const ByteRange& io) {
  TROY_ASSIGN(map, resolved_map(image, io.offset, io.length));
  std::vector<Run> runs;
  for (const Extent& extent : map) {
    const bool zero = extent.kind == ExtentKind::Zero && extent.length >= kMinZeroRun &&
                      extent.offset % kDirectAlignment == 0 && extent.length % kDirectAlignment == 0;
    if (!runs.empty() && runs.back().zero == zero && runs.back().range.end() == extent.offset)
      runs.back().range.length += extent.length;
    else runs.push_back({{extent.offset, extent.length}, zero});
  }
  return runs;
}

Result<void> write_run(const ApplyJob& job, Target& target, WriteQueue& queue, const Run& run, ApplyStats& stats) {
  const ByteRange& range = run.range;
  if (run.zero) {
    TROY_ASSIGN(changed, target.zero(range.offset, range.length));
    (changed ? stats.bytes_zeroed : stats.bytes_skipped) += range.length;
    if (changed) stats.bytes_written += range.length;
    return success();
  }
  TROY_ASSIGN(buffer, queue.next_buffer());
  TROY_TRY(job.image->read(range.offset, buffer.first(range.length)));
  TROY_TRY(queue.submit(range.offset, range.length));
  stats.bytes_written += range.length;
  return success();
}

// A piece checked against a fingerprint alone: what the target holds, by
// the hashes of each 4 KiB unit (the image's content is not read: the
// fingerprint has its hashes too).
Result<void> check_by_hashes(const Fingerprint& fingerprint, const Target& target, const JournalState& resumed,
                             Piece& piece, std::span<const std::byte> held, ApplyStats& stats) {
  const ByteRange& range = piece.range;
  const FingerprintPiece* expected = fingerprint_piece(fingerprint, range);
  if (expected == nullptr)
    return Error{fmt::format("the fingerprint has no piece at offset {} (a bug: the plan was checked against it)",
                             range.offset)};
  const PieceVerdict verdict = classify(*expected, held);
  switch (verdict.state) {
    case PieceState::New:
      piece.write = false;
      stats.bytes_skipped += range.length;
      return success();
    case PieceState::Base: return success();
    case PieceState::Torn:  // each unit the base or the new content: an interrupted run of this delta, which
      stats.torn_pieces++;  // had checked the piece before writing
      return success();
    case PieceState::Foreign: break;
  }
  // A unit torn inside, on a disk that writes less than 4 KiB atomically: the
  // journal of the interrupted run says it may have been writing there.
  if (range.offset >= resumed.done && range.offset < resumed.limit) {
    stats.torn_pieces++;
    return success();
  }
  return foreign_content(target, verdict.first_foreign, "the base the fingerprint describes");
}

}  // namespace

Result<void> check_target(const ApplyJob& job, const Target& target, const JournalState& resumed,
                          std::vector<Piece>& pieces, ApplyStats& stats) {
  // The pieces to read: all of them, but with no base check only those an
  // interrupted run finished (they are skipped when they hold the new content).
  std::vector<size_t> to_check;
  for (size_t i = 0; i < pieces.size(); i++)
    if (job.check != BaseCheck::None || pieces[i].range.end() <= resumed.done) to_check.push_back(i);
  size_t announced = 0;  // pieces whose target reads were announced to the kernel (reader thread only)
  // On the reader thread: the target; unless a fingerprint is the check, the
  // new content; with the parent as the check, the parent's content where the
  // target does not hold the new content already.
  auto fill = [&](size_t index, PieceBuffers& read) -> Result<void> {
    const ByteRange& range = pieces[to_check[index]].range;
    for (; announced < to_check.size() && pieces[to_check[announced]].range.offset < range.offset + kDiskReadAhead; announced++)
      target.will_read(pieces[to_check[announced]].range.offset, pieces[to_check[announced]].range.length);
    read.target = read.target.first(range.length);
    TROY_TRY(target.read(range.offset, read.target));
    if (job.check == BaseCheck::Hashes) return success();  // the fingerprint knows the new content's hashes too
    read.updated = read.updated.first(range.length);
    TROY_TRY(job.image->read(range.offset, read.updated));
    if (job.check != BaseCheck::Parent || std::memcmp(read.target.data(), read.updated.data(), range.length) == 0)
      return success();
    read.base = read.base.first(range.length);
    return job.base->read(range.offset, read.base);
  };
  ReadAhead reader(to_check.size(), kPiecesAhead, kPieceGrid, fill);
  uint64_t to_read = 0;
  for (size_t index : to_check) to_read += pieces[index].range.length;
  Progress progress("check", to_read, job.console);
  uint64_t checked = 0;  // bytes of the pieces done, so the rate is true however far apart they lie
  for (size_t index : to_check) {
    Piece& piece = pieces[index];
    const ByteRange& range = piece.range;
    progress.update(checked);
    checked += range.length;
    TROY_ASSIGN(read, reader.next());
    const auto t = read->target;
    if (job.check == BaseCheck::Hashes) {
      TROY_TRY(check_by_hashes(*job.fingerprint, target, resumed, piece, t, stats));
      continue;
    }
    if (std::memcmp(t.data(), read->updated.data(), t.size()) == 0) {
      piece.write = false;
      stats.bytes_skipped += range.length;
      continue;
    }
    if (job.check == BaseCheck::Parent) {
      if (auto foreign = first_foreign_sector(t, read->base, read->updated, job.sector_size))
        return foreign_content(target, range.offset + *foreign, "the parent's content");
    }
  }
  progress.update(checked);
  progress.finish();
  return success();
}

Result<void> write_pieces(const ApplyJob& job, Target& target, Journal& journal, const std::vector<Piece>& pieces,
                          ApplyStats& stats) {
  const std::vector<ByteRange> ios = coalesce(pieces);
  if (ios.empty()) {
    journal.remove();
    return success();
  }
  uint64_t total = 0;
  for (const ByteRange& io : ios) total += io.length;
  const uint64_t kill_after = test_setting("TROY_TEST_KILL_AFTER_BYTES", 0);
  const uint64_t checkpoint_bytes = std::max<uint64_t>(1, test_setting("TROY_TEST_CHECKPOINT_BYTES", kCheckpointBytes));
  WriteQueue queue(target, buffers_for_memory(kQueueDepth, kIoSize, available_memory()), kIoSize);
  Progress progress("apply", total, job.console);
  uint64_t submitted = 0;
  size_t checkpoint_end = 0;
  for (size_t i = 0; i < ios.size(); i++) {
    const ByteRange& io = ios[i];
    if (i == checkpoint_end) {
      TROY_TRY(queue.drain());
      if (i > 0) TROY_TRY(target.flush());
      checkpoint_end = window_end(ios, i, checkpoint_bytes);
      uint64_t limit = ios[checkpoint_end - 1].end();
      if (i == 0) limit = std::max(limit, journal.resumed().limit);  // the last run's torn window stays covered
      TROY_TRY(journal.record({io.offset, limit}));
    }
    stats.writing_started = true;
    TROY_ASSIGN(runs, runs_of(*job.image, io));
    for (const Run& run : runs) TROY_TRY(write_run(job, target, queue, run, stats));
    submitted += io.length;
    progress.update(submitted);
    if (kill_after != 0 && queue.bytes_completed() + stats.bytes_zeroed >= kill_after) ::raise(SIGKILL);
  }
  TROY_TRY(queue.drain());
  TROY_TRY(target.flush());
  progress.finish();
  journal.remove();
  return success();
}

Result<std::optional<uint64_t>> verify_pieces(const ApplyJob& job, Target& target, const std::vector<Piece>& pieces) {
  target.drop_cache();
  auto fill = [&](size_t index, PieceBuffers& read) -> Result<void> {
    const ByteRange& range = pieces[index].range;
    read.target = read.target.first(range.length);
    read.updated = read.updated.first(range.length);
    TROY_TRY(target.read(range.offset, read.target));
    return job.image->read(range.offset, read.updated);
  };
  ReadAhead reader(pieces.size(), kPiecesAhead, kPieceGrid, fill);
  uint64_t total = 0;
  for (const Piece& piece : pieces) total += piece.range.length;
  Progress progress("verify", total, job.console);
  uint64_t verified = 0;
  for (const Piece& piece : pieces) {
    TROY_ASSIGN(read, reader.next());
    const auto t = read->target, n = read->updated;
    const auto differs = std::mismatch(t.begin(), t.end(), n.begin());
    if (differs.first != t.end()) return std::optional<uint64_t>(piece.range.offset + (differs.first - t.begin()));
    verified += piece.range.length;
    progress.update(verified);
  }
  progress.finish();
  return std::optional<uint64_t>();
}

}  // namespace troy::cli
