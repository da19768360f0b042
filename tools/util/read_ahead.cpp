#include "read_ahead.h"

namespace troy::cli {

ReadAhead::ReadAhead(size_t count, size_t depth, size_t buffer_size, Fill fill)
    : count_(count), fill_(std::move(fill)), slots_(depth == 0 ? 1 : depth) {
  for (Slot& slot : slots_) slot.storage.resize(3 * buffer_size);
  worker_ = std::thread([this] { work(); });
}

ReadAhead::~ReadAhead() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  changed_.notify_all();
  worker_.join();
}

void ReadAhead::work() {
  for (size_t index = 0; index < count_; index++) {
    Slot& slot = slots_[index % slots_.size()];
    {
      // The slot is free once the consumer is done with the item that used it.
      std::unique_lock lock(mutex_);
      changed_.wait(lock, [&] { return stop_ || index < released_ + slots_.size(); });
      if (stop_) return;
    }
    const size_t size = slot.storage.size() / 3;
    const std::span<std::byte> storage(slot.storage);
    slot.buffers = {storage.first(size), storage.subspan(size, size), storage.subspan(2 * size, size)};
    Result<void> filled = fill_(index, slot.buffers);
    {
      std::lock_guard lock(mutex_);
      if (!filled) slot.error = filled.error();
      slot.ready = true;
    }
    changed_.notify_all();
    if (!filled) return;
  }
}

Result<const PieceBuffers*> ReadAhead::next() {
  std::unique_lock lock(mutex_);
  if (consumed_ > released_) {  // the consumer is done with the previous item: its slot is free
    slots_[released_ % slots_.size()].ready = false;
    released_ = consumed_;
    changed_.notify_all();
  }
  if (consumed_ >= count_) return Error{"read past the last item (a bug)"};
  Slot& slot = slots_[consumed_ % slots_.size()];
  changed_.wait(lock, [&] { return slot.ready; });
  consumed_++;
  if (slot.error) return *slot.error;
  return &slot.buffers;
}

}  // namespace troy::cli
