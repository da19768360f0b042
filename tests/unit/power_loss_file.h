// A file in memory that simulates power loss, for the tests of the in-place
// updaters (power_loss_test.cpp) and of merge (merge_power_loss_test.cpp).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <malloc.h>
#include <random>
#include <string>
#include <vector>

#include "io.h"

namespace troy {

inline constexpr uint64_t kPowerLossPiece = 4096;  // what a power loss keeps or drops as a unit

// AddressSanitizer maps every large buffer afresh (~15x slower here): the
// power-loss tests then try fewer survivals per loss point, and the Release
// build tries them all.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kAddressSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool kAddressSanitizer = true;
#else
inline constexpr bool kAddressSanitizer = false;
#endif
#else
inline constexpr bool kAddressSanitizer = false;
#endif

// Each loss point copies the image several times (the file's durable and
// visible bytes, the disk after the loss, the resolved contents); glibc
// gives buffers this large fresh pages from mmap each time and returns them
// on free, and faulting those pages in was ~90% of these tests' time. Kept
// in the heap, the same pages serve every loss point (the checks are the
// same; under AddressSanitizer, whose allocator ignores this, nothing
// changes). Called at the start of a power-loss test (each test is its own
// process under ctest).
inline void keep_image_buffers_in_heap() {
  mallopt(M_MMAP_THRESHOLD, 32 << 20);  // glibc's maximum
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
}

// A file in memory that loses power at its Nth write or flush (a flush that
// loses power makes nothing durable).
class PowerLossFile final : public RandomAccessFile {
 public:
  PowerLossFile(std::vector<std::byte> bytes, int64_t writes_until_loss)
      : durable_(bytes), view_(std::move(bytes)), writes_left_(writes_until_loss) {}

  uint64_t size() const override { return view_.size(); }
  const std::string& name() const override { return name_; }
  Result<void> read_at(uint64_t offset, std::span<std::byte> out) const override {
    if (offset + out.size() > view_.size()) return Error{"read past the end"};
    std::memcpy(out.data(), view_.data() + offset, out.size());
    return success();
  }
  Result<void> write_at(uint64_t offset, std::span<const std::byte> data) override {
    if (lost_ || --writes_left_ == 0) return lose_power();
    writes_++;
    for (uint64_t at = 0; at < data.size(); at += kPowerLossPiece) {
      const uint64_t piece = std::min<uint64_t>(kPowerLossPiece, data.size() - at);
      pending_.push_back({offset + at, {data.begin() + at, data.begin() + at + piece}, 0});
    }
    apply(view_, pending_.end() - static_cast<ptrdiff_t>((data.size() + kPowerLossPiece - 1) / kPowerLossPiece), pending_.end());
    return success();
  }
  Result<void> set_size(uint64_t size) override {
    if (lost_) return lose_power();
    pending_.push_back({0, {}, size});
    view_.resize(size);
    return success();
  }
  Result<void> flush() override {
    if (lost_ || --writes_left_ == 0) return lose_power();
    writes_++;
    apply(durable_, pending_.begin(), pending_.end());
    pending_.clear();
    return success();
  }

  uint64_t writes() const { return writes_; }
  bool lost_power() const { return lost_; }
  const std::vector<std::byte>& bytes() const { return view_; }

  // What the disk holds after the power loss: the durable bytes and some of
  // the pending pieces and size changes, in their order. Trial 0 keeps none,
  // 1 all, 2 only the later half (a cache that wrote back the newest first:
  // what a missing flush between data and metadata exposes), then random.
  std::vector<std::byte> after_power_loss(int trial, std::mt19937& random) const {
    std::vector<std::byte> disk = durable_;
    std::vector<Op> kept;
    for (size_t i = 0; i < pending_.size(); i++) {
      const bool keep = trial == 0   ? false
                        : trial == 1 ? true
                        : trial == 2 ? i >= pending_.size() / 2
                                     : random() % 2 == 1;
      if (keep) kept.push_back(pending_[i]);
    }
    apply(disk, kept.begin(), kept.end());
    return disk;
  }

 private:
  struct Op {
    uint64_t offset;
    std::vector<std::byte> data;  // empty: a size change to new_size
    uint64_t new_size;
  };
  template <typename It>
  static void apply(std::vector<std::byte>& disk, It first, It last) {
    for (It op = first; op != last; ++op) {
      if (op->data.empty()) {
        disk.resize(op->new_size);
        continue;
      }
      if (op->offset + op->data.size() > disk.size()) disk.resize(op->offset + op->data.size());
      std::memcpy(disk.data() + op->offset, op->data.data(), op->data.size());
    }
  }
  Result<void> lose_power() {
    lost_ = true;
    return Error{"simulated power loss"};
  }

  std::string name_ = "power-loss.img";
  std::vector<std::byte> durable_;
  std::vector<std::byte> view_;
  std::vector<Op> pending_;
  int64_t writes_left_;
  uint64_t writes_ = 0;
  bool lost_ = false;
};

// Lends a file to an owner that destroys what it is given (open_for_update
// does when it fails, as it may when the power goes while it replays a log):
// the lender keeps the file, and can still ask what survived.
class BorrowedFile final : public RandomAccessFile {
 public:
  explicit BorrowedFile(RandomAccessFile& file) : file_(file) {}
  uint64_t size() const override { return file_.size(); }
  const std::string& name() const override { return file_.name(); }
  Result<void> read_at(uint64_t offset, std::span<std::byte> out) const override { return file_.read_at(offset, out); }
  Result<void> write_at(uint64_t offset, std::span<const std::byte> data) override { return file_.write_at(offset, data); }
  Result<void> set_size(uint64_t size) override { return file_.set_size(size); }
  Result<void> flush() override { return file_.flush(); }

 private:
  RandomAccessFile& file_;
};

}  // namespace troy
