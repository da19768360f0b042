// A fingerprint: what a disk must hold under a delta's extents before the
// delta may be applied, as hashes, so the boot payload can verify a classroom
// disk with only the delta at hand (`troy fingerprint`, then
// `troy apply --base-hashes`). For each piece of the delta (the pieces of
// apply_plan.h) it keeps, per 4 KiB unit, a hash of the parent's content and a
// hash of the delta's content. Units, not whole pieces, so that a piece torn
// by a power cut (some units written, others not) is recognised as such
// without any journal: every unit holds the base or the new content.
// A text file:
//
//   troy-fingerprint 2
//   image-id ID              the delta's id (VHD UniqueId, VHDX DataWriteGuid)
//   virtual-size BYTES
//   unit 4096
//   pieces COUNT
//   OFFSET LENGTH BASE NEW   (COUNT lines, in offset order) BASE and NEW: per
//                            unit, 16 hex digits (the first 8 bytes of the
//                            unit's SHA-256), back to back
//   sha256 SHA256            of every line above, so a truncated file is refused
//
// Units are the piece cut at multiples of `unit` (absolute offsets), so a
// piece's first and last units may be shorter.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "apply_plan.h"
#include "chain.h"
#include "console.h"
#include "digest.h"

namespace troy::cli {

constexpr uint64_t kFingerprintUnit = 4096;

// The first 8 bytes of a unit's SHA-256: 2^-64 is chance enough for telling
// the base from the new content and from anything else (the fingerprint
// itself is authenticated by its sha256, and by the lab's signed manifest).
using UnitHash = uint64_t;

struct FingerprintPiece {
  ByteRange range;
  std::vector<UnitHash> base;     // one per unit
  std::vector<UnitHash> updated;  // one per unit
};

struct Fingerprint {
  std::string image_id;
  uint64_t virtual_size = 0;
  std::vector<FingerprintPiece> pieces;
};

// The unit hashes of `bytes`, which start at disk offset `offset`.
std::vector<UnitHash> unit_hashes(uint64_t offset, std::span<const std::byte> bytes);

// What a piece of a disk holds, by the fingerprint's hashes.
enum class PieceState {
  New,      // the delta's content
  Base,     // the base's content
  Torn,     // each unit one or the other: an interrupted write of this delta
  Foreign,  // some unit holds neither
};

struct PieceVerdict {
  PieceState state = PieceState::Foreign;
  uint64_t first_foreign = 0;  // disk offset of the first foreign unit (Foreign only)
};

// `disk` is what the disk holds at `piece.range`.
PieceVerdict classify(const FingerprintPiece& piece, std::span<const std::byte> disk);

// Hashes the top layer's delta over its parents' content; the chain must
// have a parent.
Result<Fingerprint> make_fingerprint(const Chain& chain);

// What a whole disk holds under a fingerprint's delta: new (every piece holds
// the new content), base (every piece the base), partial (each piece one,
// the other, or torn between them: an interrupted apply) or foreign (some
// unit holds neither).
enum class DiskState { New, Base, Partial, Foreign };

struct DiskCheck {
  DiskState state = DiskState::Foreign;
  size_t pieces_by_state[4] = {};  // indexed by PieceState
  uint64_t first_foreign = 0;      // disk offset of the first foreign unit
  size_t count(PieceState piece) const { return pieces_by_state[static_cast<int>(piece)]; }
};

// Reads `disk_path` (a block device or a raw file) under the delta's pieces,
// writing nothing, with a progress line as the console says.
Result<DiskCheck> check_disk(const Fingerprint& fingerprint, const std::string& disk_path, const Console& console);
const char* disk_state_name(DiskState state);
// "partial (40 pieces: 12 new, 27 base, 1 torn, 0 foreign)".
std::string describe(const DiskCheck& check);

std::string serialize(const Fingerprint& fingerprint);
// `path` names the file in errors.
Result<Fingerprint> parse_fingerprint(const std::string& text, const std::string& path);
Result<Fingerprint> read_fingerprint(const std::string& path);

}  // namespace troy::cli
