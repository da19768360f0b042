#include "chain_map.h"

#include <algorithm>

#include "layout.h"

namespace troy {
namespace {

// A layer owned elsewhere, so that a Chain can be built over some of another
// chain's layers without opening their files again.
class BorrowedLayer final : public Layer {
 public:
  explicit BorrowedLayer(const Layer& layer) : layer_(layer) {}
  const std::string& path() const override { return layer_.path(); }
  uint64_t virtual_size() const override { return layer_.virtual_size(); }
  uint32_t logical_sector_size() const override { return layer_.logical_sector_size(); }
  const ParentLink* parent_link() const override { return layer_.parent_link(); }
  Guid link_id() const override { return layer_.link_id(); }
  std::string format_id(const Guid& id) const override { return layer_.format_id(id); }
  Result<void> extents(uint64_t offset, uint64_t length, std::vector<Extent>& out) const override {
    return layer_.extents(offset, length, out);
  }
  Result<void> read(uint64_t offset, std::span<std::byte> out) const override { return layer_.read(offset, out); }
  LayerInfo info() const override { return layer_.info(); }

 private:
  const Layer& layer_;
};

// The part of [offset, offset + length) inside a layer of `size` bytes.
uint64_t length_inside(uint64_t size, uint64_t offset, uint64_t length) {
  return offset >= size ? 0 : std::min(length, size - offset);
}

// Appends the resolved kinds of [offset, offset + length) as seen from
// `level` down, the way Chain::read resolves bytes.
Result<void> map_from(const Chain& chain, size_t level, uint64_t offset, uint64_t length, std::vector<Extent>& out) {
  if (length == 0) return success();
  if (level == chain.layers().size()) {
    append_extent(out, offset, offset + length, ExtentKind::Zero);
    return success();
  }
  const Layer& layer = *chain.layers()[level];
  const uint64_t inside = length_inside(layer.virtual_size(), offset, length);
  std::vector<Extent> extents;
  TROY_TRY(layer.extents(offset, inside, extents));
  uint64_t cursor = offset;
  for (const Extent& extent : extents) {
    TROY_TRY(map_from(chain, level + 1, cursor, extent.offset - cursor, out));
    append_extent(out, extent.offset, extent.end(), extent.kind);
    cursor = extent.end();
  }
  TROY_TRY(map_from(chain, level + 1, cursor, offset + inside - cursor, out));
  // A parent smaller than its child reads as zeros past its end.
  if (inside < length) append_extent(out, offset + inside, offset + length, ExtentKind::Zero);
  return success();
}

}  // namespace

Result<std::vector<Extent>> held_by_top_layers(const Chain& chain, size_t levels, uint64_t offset, uint64_t length) {
  std::vector<Extent> all;
  for (size_t level = 0; level < levels && level < chain.layers().size(); level++) {
    const Layer& layer = *chain.layers()[level];
    TROY_TRY(layer.extents(offset, length_inside(layer.virtual_size(), offset, length), all));
  }
  std::sort(all.begin(), all.end(), [](const Extent& a, const Extent& b) { return a.offset < b.offset; });
  std::vector<Extent> merged;
  for (const Extent& extent : all) {
    if (!merged.empty() && extent.offset <= merged.back().end())
      merged.back().length = std::max(merged.back().end(), extent.end()) - merged.back().offset;
    else merged.push_back({extent.offset, extent.length, ExtentKind::Data});
  }
  return merged;
}

Chain chain_from_level(const Chain& chain, size_t level) {
  std::vector<std::unique_ptr<Layer>> layers;
  for (size_t i = level; i < chain.layers().size(); i++)
    layers.push_back(std::make_unique<BorrowedLayer>(*chain.layers()[i]));
  return Chain(std::move(layers));
}

Result<std::vector<Extent>> resolved_map(const Chain& chain, uint64_t offset, uint64_t length) {
  std::vector<Extent> out;
  TROY_TRY(map_from(chain, 0, offset, length, out));
  return out;
}

}  // namespace troy
