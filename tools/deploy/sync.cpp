#include "sync.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <unordered_map>

#include "apply_target.h"
#include "buffers.h"
#include "io.h"
#include "progress.h"
#include "text.h"

namespace troy::cli {

namespace {

struct ShaHash {
  size_t operator()(const Sha256& sha) const {
    size_t value;
    std::memcpy(&value, sha.data(), sizeof value);
    return value;
  }
};

// Where on the disk each content is, as the run goes: a piece once written
// holds its index content; the content it held before is gone from there.
class ContentMap {
 public:
  ContentMap(const ChunkIndex& index, std::span<const Sha256> disk) : index_(index), disk_(disk) {
    // Pieces that stay (already at their content) first: a copy from them
    // cannot be overwritten before it is read.
    for (size_t i = 0; i < disk.size(); i++)
      if (disk[i] == index.pieces[i] && !index.is_zero(i)) where_.emplace(disk[i], index.piece_offset(i));
    for (size_t i = 0; i < disk.size(); i++)
      if (disk[i] != Sha256{} && index.piece_length(i) == index.piece_size) where_.emplace(disk[i], index.piece_offset(i));
  }
  const uint64_t* find(const Sha256& sha) const {
    const auto found = where_.find(sha);
    return found == where_.end() ? nullptr : &found->second;
  }
  // Piece `i` now holds its index content.
  void written(size_t i) {
    const auto old = where_.find(disk_[i]);
    if (old != where_.end() && old->second == index_.piece_offset(i)) where_.erase(old);
    if (!index_.is_zero(i) && index_.piece_length(i) == index_.piece_size)
      where_.insert_or_assign(index_.pieces[i], index_.piece_offset(i));
  }

 private:
  const ChunkIndex& index_;
  std::span<const Sha256> disk_;
  std::unordered_map<Sha256, uint64_t, ShaHash> where_;
};

class DirectoryChunkStore final : public ChunkStore {
 public:
  explicit DirectoryChunkStore(std::string root) : root_(std::move(root)) {}
  Result<std::vector<std::byte>> fetch(const Sha256& sha, uint32_t offset, uint32_t length) override {
    const std::string path = root_ + "/" + chunk_path(sha);
    TROY_ASSIGN(file, PosixFile::open_read_only(path));
    if (uint64_t{offset} + length > file->size())
      return Error{fmt::format("{}: {} bytes, too short for {} bytes at offset {} (damaged store)", path,
                               file->size(), length, offset)};
    std::vector<std::byte> bytes(length);
    TROY_TRY(file->read_at(offset, bytes));
    return bytes;
  }
  Result<std::vector<std::byte>> fetch_units(const Sha256& sha) override {
    const std::string path = root_ + "/" + units_path(sha);
    TROY_ASSIGN(file, PosixFile::open_read_only(path));
    if (file->size() > kMaxPieceSize / kChunkUnit * 4) return Error{fmt::format("{}: too large", path)};
    std::vector<std::byte> bytes(file->size());
    TROY_TRY(file->read_at(0, bytes));
    return bytes;
  }
  const std::string& location() const override { return root_; }

 private:
  std::string root_;
};

class TargetDisk final : public SyncDisk {
 public:
  explicit TargetDisk(std::unique_ptr<Target> target) : target_(std::move(target)) {}
  uint64_t size() const override { return target_->size(); }
  const std::string& name() const override { return target_->path(); }
  Result<void> read(uint64_t offset, std::span<std::byte> out) override {
    // The next pieces are read in turn: let the kernel start on them.
    if (offset % (64 << 20) == 0) target_->will_read(offset, 64 << 20);
    return target_->read(offset, out);
  }
  // Past the page cache (the piece buffer is aligned): a power cut then
  // loses at most the piece being written and what the disk's own cache
  // holds, never seconds of pieces the kernel had not written yet.
  Result<void> write(uint64_t offset, std::span<const std::byte> data) override {
    return target_->write_direct_at(offset, data);
  }
  Result<void> zero(uint64_t offset, uint64_t length) override {
    TROY_ASSIGN(zeroed, target_->zero(offset, length));
    (void)zeroed;
    return success();
  }
  Result<void> flush() override { return target_->flush(); }

 private:
  std::unique_ptr<Target> target_;
};

std::string piece_name(const ChunkIndex& index, size_t i) {
  return fmt::format("piece {} (disk offset {})", i, index.piece_offset(i));
}

class SyncRun {
 public:
  SyncRun(const ChunkIndex& index, SyncDisk& disk, ChunkStore& store, const SyncRequest& request)
      : index_(index), disk_(disk), store_(store), request_(request), buffer_(index.piece_size) {}

  Result<SyncStats> run() {
    if (disk_.size() < index_.total_size)
      return Error{fmt::format("{}: the disk has {} bytes, fewer than the version's {}", disk_.name(), disk_.size(),
                               index_.total_size)};
    stats_.pieces = index_.piece_count();
    TROY_TRY(hash_disk());
    const auto plan = plan_sync(index_, disk_pieces_);
    uint64_t to_sync = 0;
    for (size_t i = 0; i < plan.size(); i++)
      if (plan[i].action != PieceAction::Keep) to_sync += index_.piece_length(i);
    stats_.bytes_differing = to_sync;
    Progress bar("syncing", to_sync, request_.console);
    ContentMap where(index_, disk_pieces_);
    uint64_t done = 0;
    for (size_t i = 0; i < plan.size(); i++) {
      if (plan[i].action == PieceAction::Keep) {
        stats_.kept++;
        continue;
      }
      TROY_TRY(sync_piece(i, where));
      where.written(i);
      done += index_.piece_length(i);
      bar.update(done);
      report("syncing", done, to_sync);
    }
    TROY_TRY(disk_.flush());
    bar.finish();
    report("done", to_sync, to_sync);
    return stats_;
  }

 private:
  void report(const std::string& phase, uint64_t done, uint64_t total) {
    if (request_.progress) request_.progress(phase, done, total, stats_);
  }

  Result<void> hash_disk() {
    Progress bar("checking", index_.total_size, request_.console);
    disk_pieces_.resize(index_.piece_count());
    Sha256Hasher hasher;
    for (size_t i = 0; i < index_.piece_count(); i++) {
      const auto bytes = buffer_.span().first(index_.piece_length(i));
      TROY_TRY(disk_.read(index_.piece_offset(i), bytes));
      stats_.bytes_read += bytes.size();
      disk_pieces_[i] = is_zero_bytes(bytes) ? Sha256{} : hasher(bytes);
      if (index_.is_zero(i) && disk_pieces_[i] != Sha256{}) stray_data_[i] = nonzero_runs(bytes);
      bar.update(index_.piece_offset(i) + bytes.size());
      report("checking", index_.piece_offset(i) + bytes.size(), index_.total_size);
    }
    bar.finish();
    return success();
  }

  Result<void> sync_piece(size_t i, const ContentMap& where) {
    const uint64_t offset = index_.piece_offset(i);
    const auto piece = buffer_.span().first(index_.piece_length(i));
    if (index_.is_zero(i)) {
      TROY_TRY(zero_piece(i, offset, piece));
      stats_.zeroed++;
      stats_.bytes_written += piece.size();
      return success();
    }
    if (const uint64_t* from = where.find(index_.pieces[i])) {
      TROY_TRY(disk_.read(*from, piece));
      stats_.bytes_read += piece.size();
      // Read again: the map is a guess until the bytes say so.
      if (sha256(piece) == index_.pieces[i]) {
        TROY_TRY(disk_.write(offset, piece));
        stats_.copied++;
        stats_.bytes_written += piece.size();
        return success();
      }
    }
    return fetch_piece(i, piece);
  }

  // Zeros over the stray runs the check found, or the whole piece.
  Result<void> zero_piece(size_t i, uint64_t offset, std::span<std::byte> piece) {
    const auto stray = stray_data_.find(i);
    if (stray == stray_data_.end() || (stray->second.size() == 1 && stray->second[0].length == piece.size()))
      return disk_.zero(offset, piece.size());
    std::fill(piece.begin(), piece.end(), std::byte{0});
    for (const ByteRun& run : stray->second) TROY_TRY(disk_.write(offset + run.offset, piece.subspan(run.offset, run.length)));
    return success();
  }

  // The disk's piece with the units that differ replaced by the store's;
  // written only once its SHA-256 is the index's.
  Result<void> fetch_piece(size_t i, std::span<std::byte> piece) {
    const uint64_t offset = index_.piece_offset(i);
    TROY_TRY(disk_.read(offset, piece));
    stats_.bytes_read += piece.size();
    const auto held = unit_crcs_of(piece);
    const auto wanted = wanted_units(i, piece);
    const auto runs = runs_to_fetch(wanted, held, static_cast<uint32_t>(piece.size()));
    for (const ByteRun& run : runs) TROY_TRY(fetch_into(i, piece, run));
    if (sha256(piece) != index_.pieces[i]) {
      // A unit whose CRC matched by chance, or a store that is damaged:
      // the whole piece, then, and it must match.
      const bool whole = runs.size() == 1 && runs[0].length == piece.size();
      if (!whole) TROY_TRY(fetch_into(i, piece, ByteRun{0, static_cast<uint32_t>(piece.size())}));
      const Sha256 got = sha256(piece);
      if (got != index_.pieces[i])
        return Error{fmt::format("{}/{}: {}: the fetched bytes' sha256 is {}, the signed index says {} (a damaged or "
                                 "tampered store); nothing of this piece was written",
                                 store_.location(), chunk_path(index_.pieces[i]), piece_name(index_, i),
                                 to_hex(got), to_hex(index_.pieces[i]))};
    }
    TROY_TRY(disk_.write(offset, piece));
    TROY_TRY(flush_now_and_then());
    stats_.fetched++;
    stats_.bytes_written += piece.size();
    return success();
  }

  // The CRCs of the piece's units: from the index, or the store's .units
  // file; none (so the whole piece) for a disk piece of zeros, where no unit
  // can match, or when the store has none.
  std::vector<uint32_t> wanted_units(size_t i, std::span<const std::byte> piece) {
    const auto from_index = index_.units(i);
    if (!from_index.empty()) return {from_index.begin(), from_index.end()};
    if (is_zero_bytes(piece)) return {};
    auto bytes = store_.fetch_units(index_.pieces[i]);
    if (!bytes) return {};
    stats_.bytes_fetched += bytes->size();
    auto crcs = parse_units(*bytes, units_of_length(piece.size()));
    return crcs ? *crcs : std::vector<uint32_t>{};
  }

  // A kill -9 loses nothing written (the kernel holds it); a power cut loses
  // what the disk's volatile cache held (pieces are written past the page
  // cache), to be fetched again. A flush per piece would bound that to one
  // piece, but costs a disk cache flush (3-30 ms) per MiB: on a drifted disk,
  // where nearly every piece is fetched, that is minutes. Once a second
  // bounds it to a second of fetching on a disk whose cache loses power.
  Result<void> flush_now_and_then() {
    const auto now = std::chrono::steady_clock::now();
    if (now - last_flush_ < std::chrono::seconds(1)) return success();
    last_flush_ = now;
    return disk_.flush();
  }

  Result<void> fetch_into(size_t i, std::span<std::byte> piece, const ByteRun& run) {
    TROY_ASSIGN(bytes, store_.fetch(index_.pieces[i], run.offset, run.length));
    if (bytes.size() != run.length)
      return Error{fmt::format("{}/{}: {} bytes came for {} asked at offset {}", store_.location(),
                               chunk_path(index_.pieces[i]), bytes.size(), run.length, run.offset)};
    std::copy(bytes.begin(), bytes.end(), piece.begin() + run.offset);
    stats_.bytes_fetched += bytes.size();
    return success();
  }

  const ChunkIndex& index_;
  SyncDisk& disk_;
  ChunkStore& store_;
  const SyncRequest& request_;
  AlignedBuffer buffer_;  // aligned: the disk writes it with O_DIRECT
  std::vector<Sha256> disk_pieces_;
  // Pieces the version has as zeros that hold data on the disk: the runs
  // that hold it (at most 64 runs: more is the whole piece).
  std::unordered_map<size_t, std::vector<ByteRun>> stray_data_;
  SyncStats stats_;
  std::chrono::steady_clock::time_point last_flush_ = std::chrono::steady_clock::now();
};

}  // namespace

std::string chunk_path(const Sha256& sha) {
  const std::string hex = to_hex(sha);
  return fmt::format("chunks/{}/{}", hex.substr(0, 2), hex);
}

std::string units_path(const Sha256& sha) { return chunk_path(sha) + ".units"; }

std::unique_ptr<ChunkStore> directory_chunk_store(const std::string& root) {
  return std::make_unique<DirectoryChunkStore>(root);
}

Result<std::unique_ptr<SyncDisk>> open_sync_disk(const std::string& path) {
  TROY_ASSIGN(target, Target::open(path, {}));
  return std::unique_ptr<SyncDisk>(std::make_unique<TargetDisk>(std::move(target)));
}

std::vector<PiecePlan> plan_sync(const ChunkIndex& index, std::span<const Sha256> disk_pieces) {
  std::vector<PiecePlan> plan(index.piece_count());
  ContentMap where(index, disk_pieces);
  for (size_t i = 0; i < plan.size(); i++) {
    if (disk_pieces[i] == index.pieces[i]) continue;  // Keep
    if (index.is_zero(i)) {
      plan[i].action = PieceAction::Zero;
    } else if (const uint64_t* from = where.find(index.pieces[i])) {
      plan[i] = {PieceAction::Copy, *from};
    } else {
      plan[i].action = PieceAction::Fetch;
    }
    where.written(i);
  }
  return plan;
}

std::vector<ByteRun> runs_to_fetch(std::span<const uint32_t> wanted, std::span<const uint32_t> held,
                                   uint32_t piece_length) {
  std::vector<ByteRun> runs;
  uint64_t total = 0;
  for (size_t unit = 0; unit < wanted.size(); unit++) {
    if (unit < held.size() && wanted[unit] == held[unit]) continue;
    const uint32_t start = static_cast<uint32_t>(unit * kChunkUnit);
    const uint32_t length = std::min<uint32_t>(kChunkUnit, piece_length - start);
    if (!runs.empty() && runs.back().offset + runs.back().length == start)
      runs.back().length += length;
    else
      runs.push_back({start, length});
    total += length;
  }
  if (runs.empty() || total * 2 > piece_length) return {ByteRun{0, piece_length}};
  return runs;
}

std::vector<ByteRun> nonzero_runs(std::span<const std::byte> piece) {
  const uint32_t length = static_cast<uint32_t>(piece.size());
  std::vector<ByteRun> runs;
  uint64_t total = 0;
  for (uint32_t start = 0; start < length; start += kChunkUnit) {
    const uint32_t unit = std::min<uint32_t>(kChunkUnit, length - start);
    if (is_zero_bytes(piece.subspan(start, unit))) continue;
    if (!runs.empty() && runs.back().offset + runs.back().length == start)
      runs.back().length += unit;
    else
      runs.push_back({start, unit});
    total += unit;
  }
  if (total * 4 > length) return {ByteRun{0, length}};
  return runs;
}

Result<SyncStats> sync_disk(const ChunkIndex& index, SyncDisk& disk, ChunkStore& store, const SyncRequest& request) {
  SyncRun run(index, disk, store, request);
  return run.run();
}

std::string describe(const SyncStats& stats) {
  return fmt::format("{} pieces: {} kept, {} copied from elsewhere on the disk, {} zeroed, {} fetched ({})",
                     stats.pieces, stats.kept, stats.copied, stats.zeroed, stats.fetched,
                     short_bytes(static_cast<double>(stats.bytes_fetched)));
}

}  // namespace troy::cli
