// Where a classroom machine gets the lab's files: the lab server over HTTP
// (libcurl), or a directory (a USB stick, a mounted share, the tests). The
// served directory's layout is the same either way: manifest, manifest.sig,
// versions/, and for a server /cgi-bin/report.
//
// Nothing fetched is trusted by this layer: small files (the manifest and its
// signature) come back as bytes for the caller to verify; large files are
// streamed to disk, never held whole in memory, hashed on the way, cut off as
// soon as they exceed the size the signed manifest gives, and renamed into
// place only once size and SHA-256 match.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "result.h"

namespace troy::cli {

// Bytes fetched so far of a file, for a progress line.
using FetchProgress = std::function<void(uint64_t done, uint64_t total)>;

class LabSource {
 public:
  // `location`: an http:// or https:// URL, or a directory. Anything else
  // (ftp://, file://, a missing directory) is refused here.
  static Result<std::unique_ptr<LabSource>> open(const std::string& location);
  virtual ~LabSource() = default;

  // "http://10.0.0.1:8080" or "/media/usb/troy": names the source in messages.
  virtual const std::string& location() const = 0;
  // A served file of at most `max_bytes` (more is an error naming the file).
  Result<std::string> fetch_small(const std::string& relative, uint64_t max_bytes);
  // A served file streamed to `destination`, checked against the size and
  // SHA-256 (64 lower-case hex digits) that the signed manifest gives. The
  // destination appears only when both match; a destination that already
  // holds exactly those bytes (from an earlier run) is kept without fetching.
  Result<void> fetch_checked(const std::string& relative, uint64_t size, const std::string& sha256,
                             const std::string& destination, const FetchProgress& progress = {});
  // POSTs a JSON body to a server path; a directory source has nowhere to
  // send it (an error the caller may ignore).
  virtual Result<void> post_json(const std::string& relative, const std::string& body) = 0;

 protected:
  // Streams `relative`, calling `sink` per chunk as it arrives; an error from
  // the sink stops the transfer and is returned.
  using ChunkSink = std::function<Result<void>(const char* data, size_t length)>;
  virtual Result<void> stream(const std::string& relative, const ChunkSink& sink) = 0;
};

// True when `path` holds exactly `size` bytes whose SHA-256 is `sha256`.
bool file_matches(const std::string& path, uint64_t size, const std::string& sha256);

}  // namespace troy::cli
