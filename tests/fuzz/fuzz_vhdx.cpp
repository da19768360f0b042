// libFuzzer target for the VHDX parser and its log replay.
//
// A VHDX file places every structure on a 1 MiB boundary, so even the
// smallest real file is several MiB, too large to fuzz well. The input is
// therefore a squeezed file: each 20 KiB of input fills the parts of one MiB
// of the file where structures live (the rest reads as zeros), and
// scripts/fuzz.sh squeezes real images into seeds the same way:
//   MiB 0:  the file identifier, both headers and both region tables (4 KiB each)
//   MiB k:  its first 16 KiB (log entries, BAT, metadata table, block starts)
//           and 4 KiB at 64 KiB (metadata items)
#include <cstring>

#include "fuzz_common.h"

namespace {

constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kKiB = 1 << 10;
constexpr uint64_t kSlotInput = 20 * kKiB;

struct Piece {
  uint64_t file_offset;  // within the MiB
  uint64_t length;
};
constexpr Piece kFirstMiB[] = {{0, 4 * kKiB}, {64 * kKiB, 4 * kKiB}, {128 * kKiB, 4 * kKiB},
                               {192 * kKiB, 4 * kKiB}, {256 * kKiB, 4 * kKiB}};
constexpr Piece kOtherMiB[] = {{0, 16 * kKiB}, {64 * kKiB, 4 * kKiB}};

class SqueezedSource final : public troy::Source {
 public:
  SqueezedSource(const uint8_t* data, size_t size) : input_(data, data + size) {
    size_ = (size + kSlotInput - 1) / kSlotInput * kMiB;
  }
  uint64_t size() const override { return size_; }
  const std::string& name() const override { return name_; }

  troy::Result<void> read_at(uint64_t offset, std::span<std::byte> out) const override {
    if (offset > size_ || out.size() > size_ - offset) return troy::Error{"read past the end"};
    std::memset(out.data(), 0, out.size());
    const uint64_t end = offset + out.size();
    for (uint64_t slot = offset / kMiB; slot * kMiB < end; slot++) copy_slot(slot, offset, out);
    return troy::success();
  }

 private:
  void copy_slot(uint64_t slot, uint64_t offset, std::span<std::byte> out) const {
    uint64_t input_at = slot * kSlotInput;
    const std::span<const Piece> pieces = slot == 0 ? std::span<const Piece>(kFirstMiB) : std::span<const Piece>(kOtherMiB);
    for (const Piece& piece : pieces) {
      const uint64_t start = slot * kMiB + piece.file_offset;
      const uint64_t from = std::max(offset, start);
      const uint64_t available = input_.size() > input_at ? input_.size() - input_at : 0;
      const uint64_t to = std::min({offset + out.size(), start + piece.length, start + available});
      if (from < to) std::memcpy(out.data() + (from - offset), input_.data() + input_at + (from - start), to - from);
      input_at += piece.length;
    }
  }

  std::vector<uint8_t> input_;
  uint64_t size_;
  std::string name_ = "fuzz.vhdx";
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  troy::fuzz::open_both_ways([&] { return std::make_unique<SqueezedSource>(data, size); });
  return 0;
}
