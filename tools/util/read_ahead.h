// Reads numbered items on a worker thread, a few ahead of the thread that
// consumes them in order: the base check and --verify of `troy apply` read
// the target, the image and its parent while earlier pieces are compared and
// hashed, so reading and hashing (1.7 GB/s of SHA-256 on one core) overlap.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <span>
#include <thread>
#include <vector>

#include "result.h"

namespace troy::cli {

// For the checks that read a disk in disk order (apply's base check,
// fingerprint --check): how far ahead of the reading the kernel is told what
// comes next, and how many pieces the reader thread keeps ready.
constexpr uint64_t kDiskReadAhead = 64 << 20;
constexpr size_t kPiecesAhead = 8;

// The buffers of one item: what the target holds, the image's new content,
// and the base content (filled only where the reader needs it).
struct PieceBuffers {
  std::span<std::byte> target;
  std::span<std::byte> updated;
  std::span<std::byte> base;
};

class ReadAhead {
 public:
  // Fills item `index` (0 <= index < count) into buffers of `buffer_size`
  // bytes each; it runs on the worker thread and sets the spans' lengths.
  using Fill = std::function<Result<void>(size_t index, PieceBuffers& buffers)>;

  ReadAhead(size_t count, size_t depth, size_t buffer_size, Fill fill);
  ~ReadAhead();
  ReadAhead(const ReadAhead&) = delete;
  ReadAhead& operator=(const ReadAhead&) = delete;

  // The next item, in order; valid until the following call. An error of
  // the fill function is returned for its item (and reading stops there).
  Result<const PieceBuffers*> next();

 private:
  struct Slot {
    std::vector<std::byte> storage;
    PieceBuffers buffers;
    bool ready = false;
    std::optional<Error> error;
  };
  void work();

  const size_t count_;
  Fill fill_;
  std::vector<Slot> slots_;
  size_t consumed_ = 0;  // items handed out by next()
  size_t released_ = 0;  // items the consumer is done with (all but the last handed out)
  bool stop_ = false;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::thread worker_;  // last: started once everything above exists
};

}  // namespace troy::cli
