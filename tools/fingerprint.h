// A fingerprint: what a disk must hold under a delta's extents before the
// delta may be applied, as SHA-256 hashes, so the boot payload can verify a
// classroom disk with only the delta at hand (`troy fingerprint`, then
// `troy apply --base-hashes`). For each piece of the delta (the pieces of
// apply_plan.h) it keeps the hash of the parent's content and the hash of the
// delta's content, so a disk that an interrupted apply partly updated is
// recognised too. A text file, one line per piece:
//
//   troy-fingerprint 1
//   image-id ID              the delta's id (VHD UniqueId, VHDX DataWriteGuid)
//   virtual-size BYTES
//   pieces COUNT
//   OFFSET LENGTH BASE_SHA256 NEW_SHA256     (COUNT lines, in offset order)
//   sha256 SHA256            of every line above, so a truncated file is refused
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "apply_plan.h"
#include "chain.h"
#include "digest.h"

namespace troy::cli {

struct FingerprintPiece {
  ByteRange range;
  Sha256 base{};
  Sha256 updated{};
};

struct Fingerprint {
  std::string image_id;
  uint64_t virtual_size = 0;
  std::vector<FingerprintPiece> pieces;
};

// Hashes the top layer's delta over its parents' content; the chain must
// have a parent.
Result<Fingerprint> make_fingerprint(const Chain& chain);

std::string serialize(const Fingerprint& fingerprint);
// `path` names the file in errors.
Result<Fingerprint> parse_fingerprint(const std::string& text, const std::string& path);

}  // namespace troy::cli
