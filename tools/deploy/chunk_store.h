// Writing a chunk store (docs/chunk-index.md): each piece that is not zeros
// as chunks/XX/SHA256 under the store's root, with its unit CRCs beside it
// (SHA256.units). A piece already stored (by this version or an earlier one)
// is checked, not written again: a damaged chunk is replaced, never kept.
#pragma once

#include <cstddef>
#include <span>
#include <string>

#include "digest.h"
#include "result.h"

namespace troy::cli {

struct ChunkStoreStats {
  uint64_t stored = 0;  // pieces written
  uint64_t shared = 0;  // pieces found already stored
  uint64_t bytes_stored = 0;
};

// `sha` is the SHA-256 of `bytes` (the caller hashed them while indexing).
Result<void> store_piece(const std::string& root, const Sha256& sha, std::span<const std::byte> bytes,
                         ChunkStoreStats& stats);

}  // namespace troy::cli
