// What `troy publish` adds for sync (issue 16): per version, the chunk index
// of its whole resolved disk (versions/NAME.cidx), each piece that is not
// zeros in the chunk store (chunks/, shared by every version), and the held
// table over every version so far (versions/NAME.held), each listed in the
// signed manifest with its size and SHA-256.
#pragma once

#include <span>
#include <string>

#include "chain.h"
#include "chunk_store.h"
#include "console.h"
#include "manifest.h"
#include "result.h"

namespace troy::cli {

// BYTES written to SERVED/RELATIVE (replaced whole, through a temporary
// file), with the size and SHA-256 the manifest lists for it.
Result<ManifestVersion::SignedFile> write_signed(const std::string& served, const std::string& relative,
                                                 std::span<const std::byte> bytes);

// `version` is the one being published (not yet in manifest.versions);
// `manifest` holds the versions before it, each with its content index
// (else no held table is written, and the payload decides by fingerprints).
Result<void> publish_content(const std::string& served, const Chain& chain, const Manifest& manifest,
                             ManifestVersion& version, const Console& console, ChunkStoreStats& stats);

}  // namespace troy::cli
