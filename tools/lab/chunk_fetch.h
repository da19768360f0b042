// The chunk store of a lab server over HTTP (libcurl): a range of a piece
// with a Range request, a piece's unit CRCs, a file such as a content index.
// Nothing fetched here is trusted: sync (deploy/sync.h) checks every piece
// against the signed index before writing it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "result.h"
#include "sync.h"

namespace troy::cli {

// `root`: a URL (http:// or https://) or a directory holding chunks/.
Result<std::unique_ptr<ChunkStore>> open_chunk_store(const std::string& root);

// A whole file at a URL, at most `max_bytes` (more is an error).
Result<std::vector<std::byte>> fetch_url(const std::string& url, uint64_t max_bytes);

bool is_http_location(const std::string& location);

}  // namespace troy::cli
