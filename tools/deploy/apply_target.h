// The disk `troy apply` writes: a block device or a raw file. Opening it
// refuses the targets that would destroy a running machine (mounted, holding
// the root file system, in use) and describes it for the confirmation.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "result.h"

namespace troy::cli {

// Direct I/O is used where offset, length and buffer are multiples of this.
constexpr uint64_t kDirectAlignment = 4096;

class Target {
 public:
  // Opens `path` for writing after the safety checks: a block device must not
  // be mounted (itself, a partition of it, or through LVM/RAID/dm), hold the
  // root file system, be held by anyone (O_EXCL), or be a loop device over a
  // file of `inputs`; a file must not be one of `inputs` (the image chain),
  // back a loop device or be locked by another program (a running VM), and
  // is locked against a second apply.
  static Result<std::unique_ptr<Target>> open(const std::string& path, const std::vector<std::string>& inputs);
  ~Target();
  Target(const Target&) = delete;
  Target& operator=(const Target&) = delete;

  const std::string& path() const { return path_; }
  bool is_block_device() const { return block_device_; }
  uint64_t size() const { return size_; }
  // "model Samsung SSD 860, serial S3Z9NB0K, 500107862016 bytes": what the
  // admin confirms.
  const std::string& description() const { return description_; }
  // Names the disk (and, for a file, the inode) in the progress journal.
  const std::string& identity() const { return identity_; }
  // The descriptor for writes: O_DIRECT when the target supports it and
  // `aligned`, buffered otherwise.
  int fd_for(uint64_t offset, uint64_t length, const void* buffer) const;

  Result<void> read(uint64_t offset, std::span<std::byte> out) const;
  // Announces a read to come, so the kernel starts it in the background.
  void will_read(uint64_t offset, uint64_t length) const;
  // Buffered pwrite (unaligned pieces, zeros, the no-io_uring path).
  Result<void> write_at(uint64_t offset, std::span<const std::byte> data);
  // pwrite through fd_for: past the page cache when aligned, so a write that
  // returned is in the disk (or its own cache), not lost with the RAM.
  Result<void> write_direct_at(uint64_t offset, std::span<const std::byte> data);
  // Makes [offset, offset + length) read as zeros the cheapest way the target
  // allows: BLKZEROOUT on a block device; on a file nothing where it is a hole
  // already, else a punched hole; written zeros where neither works. Returns
  // false when the range was already zero (nothing was done).
  Result<bool> zero(uint64_t offset, uint64_t length);
  Result<void> flush();
  // Forgets cached pages, so that the next reads come from the disk (--verify).
  void drop_cache();

 private:
  Result<void> write_with(int fd, uint64_t offset, std::span<const std::byte> data);
  Target(std::string path, int fd, int direct_fd, bool block_device, uint64_t size)
      : path_(std::move(path)), fd_(fd), direct_fd_(direct_fd), block_device_(block_device), size_(size) {}

  std::string path_;
  int fd_;
  int direct_fd_;  // -1 when the file system refuses O_DIRECT
  bool block_device_;
  uint64_t size_;
  std::string description_;
  std::string identity_;
};

// True when the block device `used` (mounted, or holding the root) is
// `target`, a partition of it, or built on one of those (dm, LVM, RAID), as
// /sys/dev/block says: writing `target` would then destroy it.
bool lies_on(dev_t used, dev_t target);

}  // namespace troy::cli
