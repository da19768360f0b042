// A published version's whole disk as the served directory holds it: its
// content index (versions/NAME.cidx) and the chunk store (chunks/), read as
// a base Layer. The lab server does not keep the base image or any full
// disk, only these; version management (versions_admin.h) reads a version
// through this layer to write a revert delta and its fingerprint. Every
// piece read is checked against the index's SHA-256, so a damaged chunk is
// an error naming its file, never content put into a delta.
#pragma once

#include <memory>
#include <string>

#include "chunk_index.h"
#include "layer.h"
#include "result.h"

namespace troy::cli {

// `index_path` names the index in messages; `store_root` is the directory
// holding chunks/ (the served directory).
Result<std::unique_ptr<Layer>> open_stored_version(const std::string& index_path, ChunkIndex index,
                                                   const std::string& store_root);

}  // namespace troy::cli
