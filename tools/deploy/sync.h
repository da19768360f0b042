// Sync: brings a disk, whatever it holds (blank, another lab's image, a
// version that Windows has since written to), to a published version's
// resolved content, given that version's chunk index (chunk_index.h) and a
// chunk store. The disk is read once and hashed piece by piece; a piece that
// already holds its content is kept in place, a piece whose content is found
// elsewhere on the disk is copied from there (and verified after reading), a
// piece of zeros is written as zeros, and only the rest is fetched, by the 4
// KiB units that differ when the unit CRCs (the index's, or the store's
// SHA256.units file) say few do. Every byte
// written belongs to a piece whose SHA-256 matched the index before the write.
//
// No journal: a run cut short (kill -9, power cut) is resumed by running it
// again, which re-hashes the disk and finds the pieces already written. A
// kill -9 costs at most the piece being fetched; a power cut at most the
// pieces fetched since the last flush, which comes once a second (a flush per
// piece would cost minutes on a drifted disk: sync.cpp). Only the index's
// total_size bytes of the disk are read or written (a larger disk keeps what
// lies beyond).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "chunk_index.h"
#include "console.h"
#include "result.h"

namespace troy::cli {

// Where pieces come from. The bytes returned are not trusted: sync checks
// them against the index before writing anything.
class ChunkStore {
 public:
  virtual ~ChunkStore() = default;
  // `length` bytes at `offset` of the piece whose SHA-256 is `sha`.
  virtual Result<std::vector<std::byte>> fetch(const Sha256& sha, uint32_t offset, uint32_t length) = 0;
  // The piece's unit CRCs file (chunks/XX/SHA256.units: chunk_index.h
  // serialize_units), a hint; a store without them says so with an error.
  virtual Result<std::vector<std::byte>> fetch_units(const Sha256& sha) = 0;
  // "http://10.0.0.1:8080/chunks" or "/srv/troy/chunks": for messages.
  virtual const std::string& location() const = 0;
};

// chunks/XX/SHA256 under a store's root (docs/chunk-index.md), and beside
// it SHA256.units.
std::string chunk_path(const Sha256& sha);
std::string units_path(const Sha256& sha);

// A chunk store in a directory (SERVED/chunks, a USB stick).
std::unique_ptr<ChunkStore> directory_chunk_store(const std::string& root);

// The disk sync writes: a Target (apply_target.h) in use, memory in tests.
class SyncDisk {
 public:
  virtual ~SyncDisk() = default;
  virtual uint64_t size() const = 0;
  virtual const std::string& name() const = 0;
  virtual Result<void> read(uint64_t offset, std::span<std::byte> out) = 0;
  virtual Result<void> write(uint64_t offset, std::span<const std::byte> data) = 0;
  virtual Result<void> zero(uint64_t offset, uint64_t length) = 0;
  virtual Result<void> flush() = 0;
};

// Opens a block device or raw file with apply's safety checks (not mounted,
// not in use).
Result<std::unique_ptr<SyncDisk>> open_sync_disk(const std::string& path);

// What each piece needs, from the disk's piece hashes alone.
enum class PieceAction { Keep, Zero, Copy, Fetch };
struct PiecePlan {
  PieceAction action = PieceAction::Keep;
  uint64_t copy_from = 0;  // Copy: the disk offset holding the content
};
// `disk_pieces[i]`: the SHA-256 of the disk's piece i (all zeros for zeros).
std::vector<PiecePlan> plan_sync(const ChunkIndex& index, std::span<const Sha256> disk_pieces);

// Which [offset, length) runs of a piece to fetch: the units whose CRC
// differs from the index's, merged when adjacent; the whole piece when they
// are more than half of it (one request instead of many).
struct ByteRun {
  uint32_t offset = 0;
  uint32_t length = 0;
};
std::vector<ByteRun> runs_to_fetch(std::span<const uint32_t> wanted, std::span<const uint32_t> held,
                                   uint32_t piece_length);

// The 4 KiB units of a disk piece that are not zero, merged when adjacent;
// the whole piece when they are more than a quarter of it. A piece the
// version has as zeros is made zero by writing over these runs only: a
// drifted disk has a few stray units in such pieces, and punching a 1 MiB
// hole in a file (a file system transaction each) cost 7 ms a piece.
std::vector<ByteRun> nonzero_runs(std::span<const std::byte> piece);

struct SyncStats {
  uint64_t pieces = 0;
  uint64_t kept = 0, copied = 0, zeroed = 0, fetched = 0;
  uint64_t bytes_read = 0;       // of the disk
  uint64_t bytes_written = 0;    // to the disk
  uint64_t bytes_fetched = 0;    // from the store
  uint64_t bytes_differing = 0;  // of the pieces that did not match
};

// Progress: `phase` is "checking" (reading the disk) or "syncing" (writing
// the pieces that differ); done and total in bytes of that phase.
using SyncProgress = std::function<void(const std::string& phase, uint64_t done, uint64_t total, const SyncStats&)>;

struct SyncRequest {
  Console console;        // the progress bars
  SyncProgress progress;  // reports (the lab's POSTs); may be empty
};

Result<SyncStats> sync_disk(const ChunkIndex& index, SyncDisk& disk, ChunkStore& store, const SyncRequest& request);

// "4096 pieces: 3900 kept, 12 copied, 100 zeroed, 84 fetched (5.2 MiB)".
std::string describe(const SyncStats& stats);

}  // namespace troy::cli
