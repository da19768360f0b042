// Which published version a disk holds, decided by content. A delta that
// only puts back what an earlier delta changed (v1 changes A and B, v2
// reverts A) makes a disk at the base hold v2's content under v2's delta, so
// asking each delta's fingerprint (versions.h's walk) takes a base disk for
// v2. The held table cannot be fooled that way: it lists every piece where
// any two published versions differ, and each version's SHA-256 there
// (from the versions' chunk indexes). A disk holds version k when each of
// those pieces holds version k's content; elsewhere every version is the
// same. `troy publish` writes one for the newest version, covering them all.
//
// A binary file, little-endian: a 64-byte header (magic TROYHELD, version 1,
// piece_size, total_size, version_count, row_count), row_count piece numbers
// (8 bytes each, increasing), row_count x version_count SHA-256 (a row per
// piece, the base first; 32 zero bytes: zeros), and the SHA-256 of all that.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "chunk_index.h"
#include "result.h"
#include "sync.h"

namespace troy::cli {

struct HeldTable {
  uint64_t total_size = 0;
  uint32_t piece_size = kDefaultPieceSize;
  uint32_t versions = 0;
  std::vector<uint64_t> pieces;  // the pieces where versions differ, increasing
  std::vector<Sha256> hashes;    // pieces.size() rows of `versions` hashes

  const Sha256& at(size_t row, size_t version) const { return hashes[row * versions + version]; }
  uint64_t piece_length(size_t row) const;
};

// From the chunk indexes of every version, the base first (same size and
// piece size, else an error naming the version).
Result<HeldTable> make_held_table(std::span<const ChunkIndex> versions, std::span<const std::string> names);

std::vector<std::byte> serialize(const HeldTable& table);
Result<HeldTable> parse_held_table(std::span<const std::byte> bytes, const std::string& name);
Result<HeldTable> read_held_table(const std::string& path);

// The disk's SHA-256 at each row's piece (32 zero bytes for zeros).
Result<std::vector<Sha256>> hash_held_pieces(const HeldTable& table, SyncDisk& disk);

// The newest version the disk holds exactly (an index into the versions,
// the base being 0); nullopt when it holds none (blank, foreign, drifted,
// or an apply cut short).
std::optional<size_t> held_by_content(const HeldTable& table, std::span<const Sha256> disk);

}  // namespace troy::cli
