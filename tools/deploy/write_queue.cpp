#include "write_queue.h"

#include <liburing.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace troy::cli {

WriteQueue::WriteQueue(Target& target, size_t depth, size_t buffer_size) : target_(target) {
  for (size_t i = 0; i < depth; i++) {
    slots_.push_back({std::make_unique<AlignedBuffer>(buffer_size), 0, 0});
    free_.push_back(depth - 1 - i);
  }
  ring_ = std::make_unique<io_uring>();
  if (io_uring_queue_init(static_cast<unsigned>(depth), ring_.get(), 0) != 0) ring_.reset();
}

WriteQueue::~WriteQueue() {
  if (!ring_) return;
  // Writes still in flight (after an error) must not land in freed buffers.
  while (in_flight_ > 0) {
    io_uring_cqe* cqe = nullptr;
    if (io_uring_wait_cqe(ring_.get(), &cqe) != 0) break;
    io_uring_cqe_seen(ring_.get(), cqe);
    in_flight_--;
  }
  io_uring_queue_exit(ring_.get());
}

Result<std::span<std::byte>> WriteQueue::next_buffer() {
  while (free_.empty()) TROY_TRY(reap_one());
  current_ = free_.back();
  return slots_[current_].buffer->span();
}

Result<void> WriteQueue::submit(uint64_t offset, size_t length) {
  free_.pop_back();
  Slot& slot = slots_[current_];
  slot.offset = offset;
  slot.length = length;
  const int fd = target_.fd_for(offset, length, slot.buffer->data);
  if (!ring_) {
    const ssize_t written = ::pwrite(fd, slot.buffer->data, length, static_cast<off_t>(offset));
    return finish(slot, written < 0 ? -errno : written);
  }
  io_uring_sqe* sqe = io_uring_get_sqe(ring_.get());  // never null: one entry per buffer
  io_uring_prep_write(sqe, fd, slot.buffer->data, static_cast<unsigned>(length), offset);
  io_uring_sqe_set_data(sqe, &slot);
  const int submitted = io_uring_submit(ring_.get());
  if (submitted < 0)
    return Error{fmt::format("{}: cannot queue a write at offset {}: {}", target_.path(), offset, std::strerror(-submitted))};
  in_flight_++;
  return success();
}

Result<void> WriteQueue::drain() {
  while (in_flight_ > 0) TROY_TRY(reap_one());
  return success();
}

Result<void> WriteQueue::reap_one() {
  io_uring_cqe* cqe = nullptr;
  const int waited = io_uring_wait_cqe(ring_.get(), &cqe);
  if (waited != 0) return Error{fmt::format("{}: waiting for writes failed: {}", target_.path(), std::strerror(-waited))};
  Slot& slot = *static_cast<Slot*>(io_uring_cqe_get_data(cqe));
  const int64_t result = cqe->res;
  io_uring_cqe_seen(ring_.get(), cqe);
  in_flight_--;
  return finish(slot, result);
}

// A failed write is an error; a short one (rare: a signal, the end of a
// device) is completed with a plain write.
Result<void> WriteQueue::finish(Slot& slot, int64_t result) {
  if (result < 0)
    return Error{fmt::format("{}: write failed at offset {}: {}", target_.path(), slot.offset,
                             std::strerror(static_cast<int>(-result)))};
  const auto written = static_cast<size_t>(result);
  if (written < slot.length)
    TROY_TRY(target_.write_at(slot.offset + written, std::span(slot.buffer->data + written, slot.length - written)));
  completed_ += slot.length;
  free_.push_back(static_cast<size_t>(&slot - slots_.data()));
  return success();
}

}  // namespace troy::cli
