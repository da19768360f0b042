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

// Appends the parts of `extent` that no extent of `upper` (sorted, disjoint) covers.
void append_uncovered(const Extent& extent, const std::vector<Extent>& upper, std::vector<Extent>& out) {
  auto first = std::lower_bound(upper.begin(), upper.end(), extent.offset,
                                [](const Extent& e, uint64_t at) { return e.end() <= at; });
  uint64_t at = extent.offset;
  for (auto it = first; it != upper.end() && it->offset < extent.end(); ++it) {
    if (it->offset > at) out.push_back({at, it->offset - at, extent.kind});
    at = std::max(at, it->end());
  }
  if (at < extent.end()) out.push_back({at, extent.end() - at, extent.kind});
}

// `upper` with what `lower` holds where `upper` holds nothing, sorted.
std::vector<Extent> overlay(const std::vector<Extent>& upper, const std::vector<Extent>& lower) {
  std::vector<Extent> pieces = upper;
  for (const Extent& extent : lower) append_uncovered(extent, upper, pieces);
  std::sort(pieces.begin(), pieces.end(), [](const Extent& a, const Extent& b) { return a.offset < b.offset; });
  std::vector<Extent> out;
  for (const Extent& piece : pieces) append_extent(out, piece.offset, piece.end(), piece.kind);
  return out;
}

}  // namespace

Result<void> extents_above(const Chain& chain, size_t level, uint64_t offset, uint64_t length,
                           std::vector<Extent>& out) {
  std::vector<Extent> held;
  for (size_t i = 0; i < level; i++) {
    std::vector<Extent> layer_extents;
    TROY_TRY(chain.layers()[i]->extents(offset, length, layer_extents));
    held = overlay(held, layer_extents);
  }
  for (const Extent& extent : held) append_extent(out, extent.offset, extent.end(), extent.kind);
  return success();
}

Result<std::vector<Extent>> held_by_top_layers(const Chain& chain, size_t levels, uint64_t offset, uint64_t length) {
  std::vector<Extent> held;
  TROY_TRY(extents_above(chain, std::min(levels, chain.layers().size()), offset, length, held));
  std::vector<Extent> merged;
  for (const Extent& extent : held) append_extent(merged, extent.offset, extent.end(), ExtentKind::Data);
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
