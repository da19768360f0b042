// Writes to a Target with many MiB in flight through io_uring, in the order
// submitted, with O_DIRECT for aligned pieces (target.fd_for). Where io_uring
// is unavailable (an old kernel, a seccomp filter) it writes synchronously.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "apply_target.h"
#include "buffers.h"
#include "result.h"

struct io_uring;

namespace troy::cli {

class WriteQueue {
 public:
  // `depth` buffers of `buffer_size` bytes: depth * buffer_size bytes in flight at most.
  WriteQueue(Target& target, size_t depth, size_t buffer_size);
  ~WriteQueue();
  WriteQueue(const WriteQueue&) = delete;
  WriteQueue& operator=(const WriteQueue&) = delete;

  // A free buffer to fill, waiting for a write to finish when all are in flight.
  Result<std::span<std::byte>> next_buffer();
  // Writes the first `length` bytes of the buffer next_buffer() returned, at `offset`.
  Result<void> submit(uint64_t offset, size_t length);
  // Waits until every submitted write has finished.
  Result<void> drain();
  // Bytes whose write has finished (not necessarily on stable storage).
  uint64_t bytes_completed() const { return completed_; }
  bool uses_io_uring() const { return ring_ != nullptr; }

 private:
  struct Slot {
    std::unique_ptr<AlignedBuffer> buffer;
    uint64_t offset = 0;
    size_t length = 0;
  };
  Result<void> reap_one();
  Result<void> finish(Slot& slot, int64_t result);

  Target& target_;
  std::unique_ptr<io_uring> ring_;
  std::vector<Slot> slots_;
  std::vector<size_t> free_;
  size_t current_ = 0;
  size_t in_flight_ = 0;
  uint64_t completed_ = 0;
};

}  // namespace troy::cli
