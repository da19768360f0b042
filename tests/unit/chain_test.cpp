// Chain resolution against the Layer interface alone, with layers made up in
// memory: which layer each byte comes from, ZERO extents, size differences.
#include "chain.h"

#include <gtest/gtest.h>

namespace troy {
namespace {

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

std::string resolve(const Chain& chain, uint64_t offset, uint64_t length) {
  std::vector<std::byte> buffer(length);
  EXPECT_TRUE(chain.read(offset, buffer).ok());
  std::string text;
  for (std::byte b : buffer) text += b == std::byte{0} ? '.' : static_cast<char>(b);
  return text;
}

Chain make_chain(std::vector<std::unique_ptr<Layer>> layers) { return Chain(std::move(layers)); }

TEST(Chain, EachByteComesFromTheHighestLayerHoldingIt) {
  std::vector<std::unique_ptr<Layer>> layers;
  layers.push_back(std::make_unique<FakeLayer>(12, 'C', std::vector<Extent>{{2, 2, ExtentKind::Data}}));
  layers.push_back(std::make_unique<FakeLayer>(12, 'B', std::vector<Extent>{{3, 4, ExtentKind::Data}}));
  layers.push_back(std::make_unique<FakeLayer>(12, 'A', std::vector<Extent>{{0, 10, ExtentKind::Data}}));
  const Chain chain = make_chain(std::move(layers));
  EXPECT_EQ(resolve(chain, 0, 12), "AACCBBBAAA..");
  EXPECT_EQ(resolve(chain, 3, 5), "CBBBA");
}

TEST(Chain, ZeroExtentsHideTheParent) {
  std::vector<std::unique_ptr<Layer>> layers;
  layers.push_back(std::make_unique<FakeLayer>(8, 'C', std::vector<Extent>{{2, 3, ExtentKind::Zero}}));
  layers.push_back(std::make_unique<FakeLayer>(8, 'A', std::vector<Extent>{{0, 8, ExtentKind::Data}}));
  EXPECT_EQ(resolve(make_chain(std::move(layers)), 0, 8), "AA...AAA");
}

TEST(Chain, AParentSmallerThanItsChildReadsZerosPastItsEnd) {
  std::vector<std::unique_ptr<Layer>> layers;
  layers.push_back(std::make_unique<FakeLayer>(10, 'C', std::vector<Extent>{{9, 1, ExtentKind::Data}}));
  layers.push_back(std::make_unique<FakeLayer>(6, 'A', std::vector<Extent>{{0, 6, ExtentKind::Data}}));
  const Chain chain = make_chain(std::move(layers));
  EXPECT_EQ(resolve(chain, 0, 10), "AAAAAA...C");
  EXPECT_EQ(chain.virtual_size(), 10u);
}

TEST(Chain, HoldsAnythingSeesEveryLayer) {
  std::vector<std::unique_ptr<Layer>> layers;
  layers.push_back(std::make_unique<FakeLayer>(100, 'C', std::vector<Extent>{}));
  layers.push_back(std::make_unique<FakeLayer>(100, 'A', std::vector<Extent>{{50, 1, ExtentKind::Data}}));
  const Chain chain = make_chain(std::move(layers));
  EXPECT_TRUE(*chain.holds_anything(40, 20));
  EXPECT_FALSE(*chain.holds_anything(0, 50));
}

}  // namespace
}  // namespace troy
