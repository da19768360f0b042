// Questions about files every floor asks.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "chain.h"
#include "result.h"

namespace troy::cli {

// True when both paths name the same existing file (device and inode).
bool same_file(const std::string& a, const std::string& b);

// The whole of a small input file (a key, a manifest, a signature): a
// regular file of at most `max_bytes`, else one error naming it as `what`.
// A FIFO, a device or a directory is refused at once, never waited on.
Result<std::string> read_small_file(const std::string& path, uint64_t max_bytes, std::string_view what);

// How every command reads an image chain (--parent, --force, --ignore-checksums).
struct ReadOptions {
  std::vector<std::string> parents;
  bool force = false;
  bool ignore_checksums = false;
};
ChainOptions chain_options(const ReadOptions& options, Diagnostics& diagnostics);

// The files of a chain, top first: inputs an output must never replace.
std::vector<std::string> chain_paths(const Chain& chain);

// One line per parent of the chain, saying which file it is and how it was
// found ("parent of delta.avhdx: /lab/base.vhdx (found by its relative_path
// locator)"), so that an admin sees which files a command reads or writes.
std::vector<std::string> parent_lines(const Chain& chain);

// An exclusive lock on SERVED/.publish.lock, held while the object lives, so
// that one command at a time changes a served directory (troy publish,
// troy lab rollback, troy lab squash): a squash removes the files its
// manifest does not list, which a running publish is writing. Taken without
// waiting: a second command is refused with one line. The kernel drops the
// lock with the process (kill -9, power loss leave nothing to clean up).
class ServedLock {
 public:
  static Result<ServedLock> take(const std::string& served);
  ServedLock(ServedLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  ServedLock& operator=(ServedLock&&) = delete;
  ServedLock(const ServedLock&) = delete;
  ~ServedLock();

 private:
  explicit ServedLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace troy::cli
