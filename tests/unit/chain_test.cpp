// Chain resolution against the Layer interface alone, with layers made up in
// memory: which layer each byte comes from, ZERO extents, size differences.
#include "chain.h"

#include <gtest/gtest.h>

#include "fake_layer.h"

namespace troy {
namespace {

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
