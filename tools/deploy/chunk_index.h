// A chunk index: the SHA-256 of each fixed-size piece of a byte stream (a
// version's resolved disk, a delta file), so a reader can verify every piece
// before it uses it, and a classroom machine can tell which pieces of its
// disk already hold a version's content. The format is in docs/chunk-index.md:
// a 64-byte header, one 32-byte entry per piece (its SHA-256, or 32 zero
// bytes for a piece of zeros), optionally one CRC-32C per 4 KiB unit of each
// piece that is not zeros (a hint for fetching less than a piece, never
// trusted: the piece's SHA-256 decides), and the SHA-256 of everything before
// it. A version's content index carries no CRCs (they would be 0.1% of the
// disk, fetched at every boot); the chunk store keeps them per piece instead.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "chain.h"
#include "digest.h"
#include "io.h"
#include "result.h"

namespace troy::cli {

// 1 MiB: a 32 GiB disk is 32768 pieces (an index of 1 MiB of hashes, as many
// files in a chunk store and as many requests at most), large enough that a
// request's overhead is small against its bytes, and still a small buffer on
// a 2 GB machine. Drift is fetched by 4 KiB unit (the unit CRCs), so a larger
// piece does not make a scattered change cost more bytes.
constexpr uint32_t kDefaultPieceSize = 1 << 20;
constexpr uint32_t kMinPieceSize = 64 << 10;
constexpr uint32_t kMaxPieceSize = 4 << 20;
constexpr uint32_t kChunkUnit = 4096;
// An index larger than this is refused unread (a 64 TiB disk is 2 GiB of
// hashes at 64 KiB pieces; 256 MiB covers 4 PiB at 1 MiB pieces).
constexpr uint64_t kMaxChunkIndexBytes = 256ull << 20;

struct ChunkIndex {
  uint64_t total_size = 0;
  uint32_t piece_size = kDefaultPieceSize;
  uint32_t unit_size = 0;           // kChunkUnit when unit_crcs are kept, else 0
  std::vector<Sha256> pieces;       // all zero bytes: a piece of zeros
  std::vector<uint32_t> unit_crcs;  // the CRC-32C of each unit of each non-zero piece, in order
  std::vector<uint64_t> first_unit; // per piece: its first entry in unit_crcs

  size_t piece_count() const { return pieces.size(); }
  uint64_t piece_offset(size_t index) const { return uint64_t{index} * piece_size; }
  uint32_t piece_length(size_t index) const;
  bool is_zero(size_t index) const;
  // The unit CRCs of piece `index` (empty for a zero piece, or without CRCs).
  std::span<const uint32_t> units(size_t index) const;
};

// The number of pieces of `piece_size` that cover `total_size` bytes.
uint64_t piece_count_for(uint64_t total_size, uint32_t piece_size);
// An admin's --piece-size: a power of two from 64 KiB to 4 MiB.
Result<void> check_piece_size(uint64_t piece_size, const std::string& what);

bool is_zero_bytes(std::span<const std::byte> bytes);
// The CRC-32C of each 4 KiB unit of a piece (the last one may be shorter).
std::vector<uint32_t> unit_crcs_of(std::span<const std::byte> piece);

// Adds the next piece's bytes (pieces in order, each piece_length long).
void append_piece(ChunkIndex& index, std::span<const std::byte> bytes);

std::vector<std::byte> serialize(const ChunkIndex& index);
// `name` names the file in errors: "NAME: chunk index: FIELD ...".
Result<ChunkIndex> parse_chunk_index(std::span<const std::byte> bytes, const std::string& name);
Result<ChunkIndex> read_chunk_index(const std::string& path);
// Written safely (complete or absent, util/output.h); replaces `path`.
Result<void> write_chunk_index(const ChunkIndex& index, const std::string& path);

// Called with each piece that is not zeros, as it is indexed (publish stores
// it in the chunk store in the same pass).
using PieceVisitor = std::function<Result<void>(size_t index, const Sha256& sha, std::span<const std::byte> bytes)>;
// Called after each piece with the bytes indexed so far.
using IndexProgress = std::function<void(uint64_t done)>;

// Indexes every byte of `source`, or the resolved content of `chain`; with
// `unit_crcs`, the index keeps each unit's CRC too.
Result<ChunkIndex> index_source(const Source& source, uint32_t piece_size, const PieceVisitor& visit = {},
                                const IndexProgress& progress = {}, bool unit_crcs = false);
Result<ChunkIndex> index_chain(const Chain& chain, uint32_t piece_size, const PieceVisitor& visit = {},
                               const IndexProgress& progress = {}, bool unit_crcs = false);

// The unit CRCs as stored beside a piece in a chunk store (4 bytes each,
// little-endian), and back; nullopt when `bytes` is not `units` of them.
std::vector<std::byte> serialize_units(std::span<const uint32_t> crcs);
std::optional<std::vector<uint32_t>> parse_units(std::span<const std::byte> bytes, size_t units);
size_t units_of_length(uint64_t length);

}  // namespace troy::cli
