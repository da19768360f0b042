// A remote file read over HTTP(S) with Range requests, as a libvhd Source:
// the format drivers parse a delta on the lab server without it ever being
// held whole in RAM or copied to the work folder (docs/streaming.md).
//
// Nothing unverified leaves this class: the file is cut into the pieces of a
// piece table (from the file's chunk index, itself covered by the signed
// manifest or given by the admin), every piece fetched is hashed and compared
// before any of its bytes are returned, and a piece that does not match is
// one error line naming the URL and the piece. Verified pieces are kept in a
// small bounded cache, so the drivers' small metadata reads (footer, BAT,
// sector bitmaps) do not fetch the same piece again.
//
// Transient failures (no connection, a timeout, a cut transfer, HTTP 5xx,
// 408, 429) are retried with a doubling pause; an answer that is not the
// range asked for (HTTP 200: the server ignores Range; a Content-Range of
// another range or another file size; a short or an oversized body) is
// refused at once.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "chunk_index.h"
#include "digest.h"
#include "io.h"

namespace troy::cli {

// One piece of a file and the SHA-256 its bytes must have.
struct PieceHash {
  uint64_t offset = 0;
  uint64_t length = 0;
  Sha256 sha256{};
  bool zero = false;  // the index says it is all zeros: never fetched
};

// The pieces of one file, in order, covering it without gap or overlap.
struct PieceTable {
  std::string name;  // the index it came from, for messages
  uint64_t file_size = 0;
  std::vector<PieceHash> pieces;
};

// Checks that the pieces cover [0, file_size) in order, each non-empty.
Result<void> check_piece_table(const PieceTable& table);

// The piece table of a file's chunk index (deploy/chunk_index.h); `name`
// names the index in messages.
PieceTable piece_table(const ChunkIndex& index, const std::string& name);

// The piece size of a delta file's index (troy publish): the grain of what
// the delta path fetches, since a piece is fetched whole to be verified. A
// change of a few KiB costs one or two pieces: at 256 KiB one machine's
// update fetched 5.3 x the changed 4 KiB units (bench/delivery.sh), at 64 KiB
// (the chunk index's smallest piece) 2.2 x. A resumed or interrupted transfer
// fetches at most one piece again, and a run of pieces still goes in one
// request (HttpReadOptions::max_request_bytes). 32 bytes of index per piece.
constexpr uint32_t kFileIndexPieceSize = 64 << 10;

struct HttpReadOptions {
  int attempts = 6;               // per range, the first included
  unsigned first_pause_ms = 500;  // then doubled, at most 8 s
  uint64_t cache_bytes = 8 << 20;  // verified pieces kept (at least the pieces of one request)
  uint64_t max_request_bytes = 4 << 20;  // one Range request asks for at most this (whole pieces)
  long connect_timeout_s = 15;
  long stall_time_s = 60;  // under 1 KiB/s for this long: an error (retried)
};

// What a source fetched, for the summary and the tests.
struct HttpReadStats {
  uint64_t requests = 0;
  uint64_t bytes_fetched = 0;  // body bytes received, verified or not
  uint64_t retries = 0;
};

class HttpRangeSource final : public troy::Source {
 public:
  // `url`: http:// or https://. Nothing is fetched until the first read.
  static Result<std::unique_ptr<HttpRangeSource>> open(const std::string& url, PieceTable table,
                                                       const HttpReadOptions& options = {});
  ~HttpRangeSource() override;
  HttpRangeSource(const HttpRangeSource&) = delete;
  HttpRangeSource& operator=(const HttpRangeSource&) = delete;

  uint64_t size() const override { return table_.file_size; }
  // Only verified bytes: fetched (or cached) pieces whose SHA-256 matched.
  Result<void> read_at(uint64_t offset, std::span<std::byte> out) const override;
  const std::string& name() const override { return url_; }
  HttpReadStats stats() const;

 private:
  struct Cached {
    size_t piece;
    std::vector<std::byte> bytes;
  };
  HttpRangeSource(std::string url, PieceTable table, const HttpReadOptions& options);
  size_t piece_at(uint64_t offset) const;
  Result<std::vector<std::byte>> fetch_verified(size_t first, size_t last) const;
  Result<std::vector<std::byte>> fetch_with_retries(uint64_t offset, uint64_t length) const;
  const std::vector<std::byte>* cached(size_t piece) const;
  void remember(size_t piece, std::vector<std::byte> bytes) const;

  std::string url_;
  PieceTable table_;
  HttpReadOptions options_;
  mutable std::mutex mutex_;  // reads may come from the read-ahead thread
  mutable void* curl_ = nullptr;  // one handle, so the connection is kept between requests
  mutable std::list<Cached> cache_;  // most recently used first
  mutable std::unordered_map<size_t, std::list<Cached>::iterator> cache_index_;
  mutable uint64_t cache_size_ = 0;
  mutable HttpReadStats stats_;
};

// HttpRangeSource::open, then the first piece read and verified: an
// unreachable server, one that ignores Range, a file replaced or truncated on
// the server fail here with their own line, not later as "not a VHD or VHDX
// image" (the drivers' probes take a failed read for another format).
Result<std::unique_ptr<HttpRangeSource>> open_remote_image(const std::string& url, PieceTable table,
                                                           const HttpReadOptions& options = {});

// "http://" or "https://".
bool is_http_url(const std::string& location);

// A chunk index from a file or an http(s) URL (at most kMaxChunkIndexBytes).
// It is the trust anchor of what it indexes: give one from a trusted place
// (troy update takes it from the signed manifest, checked by its SHA-256).
Result<ChunkIndex> load_chunk_index(const std::string& file_or_url);

}  // namespace troy::cli
