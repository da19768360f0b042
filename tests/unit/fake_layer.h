// A layer made up in memory for tests of what is written against the Layer
// interface alone (chain resolution, merge).
#pragma once

#include <algorithm>
#include <string>
#include <vector>

#include "layer.h"

namespace troy {

// A layer whose Data extents read as its fill byte.
class FakeLayer final : public Layer {
 public:
  FakeLayer(uint64_t size, uint8_t fill, std::vector<Extent> extents)
      : size_(size), fill_(fill), extents_(std::move(extents)) {}

  const std::string& path() const override { return path_; }
  uint64_t virtual_size() const override { return size_; }
  uint32_t logical_sector_size() const override { return 512; }
  const ParentLink* parent_link() const override { return nullptr; }
  Guid link_id() const override { return {}; }
  std::string format_id(const Guid&) const override { return "fake"; }
  Result<void> extents(uint64_t offset, uint64_t length, std::vector<Extent>& out) const override {
    for (const Extent& e : extents_) {
      const uint64_t from = std::max(offset, e.offset);
      const uint64_t to = std::min({offset + length, e.end(), size_});
      if (from < to) out.push_back({from, to - from, e.kind});
    }
    return success();
  }
  Result<void> read(uint64_t, std::span<std::byte> out) const override {
    std::fill(out.begin(), out.end(), std::byte{fill_});
    return success();
  }
  LayerInfo info() const override { return {}; }

 private:
  std::string path_ = "fake";
  uint64_t size_;
  uint8_t fill_;
  std::vector<Extent> extents_;
};

}  // namespace troy
