// What apply builds its plan from: the extents of the top layers, the disk
// below them, and where the resolved disk is zeros without data.
#include "chain_map.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "fake_layer.h"

namespace troy {
namespace {

// top C: [2,4) data, [8,10) zero; middle B: [3,7) data; bottom A: [0,6) data, 12 bytes.
Chain three_layers() {
  std::vector<std::unique_ptr<Layer>> layers;
  layers.push_back(std::make_unique<FakeLayer>(
      12, 'C', std::vector<Extent>{{2, 2, ExtentKind::Data}, {8, 2, ExtentKind::Zero}}));
  layers.push_back(std::make_unique<FakeLayer>(12, 'B', std::vector<Extent>{{3, 4, ExtentKind::Data}}));
  layers.push_back(std::make_unique<FakeLayer>(12, 'A', std::vector<Extent>{{0, 6, ExtentKind::Data}}));
  return Chain(std::move(layers));
}

std::string describe(const std::vector<Extent>& extents) {
  std::string text;
  for (const Extent& e : extents)
    text += fmt::format("{}+{}{} ", e.offset, e.length, e.kind == ExtentKind::Zero ? "z" : "");
  return text;
}

std::string resolve(const Chain& chain) {
  std::vector<std::byte> bytes(chain.virtual_size());
  EXPECT_TRUE(chain.read(0, bytes).ok());
  std::string text;
  for (std::byte b : bytes) text += b == std::byte{0} ? '.' : static_cast<char>(b);
  return text;
}

TEST(ChainMap, TopLayersExtentsAreMergedWhateverTheirKind) {
  const Chain chain = three_layers();
  EXPECT_EQ(describe(*held_by_top_layers(chain, 1, 0, 12)), "2+2 8+2 ");
  EXPECT_EQ(describe(*held_by_top_layers(chain, 2, 0, 12)), "2+5 8+2 ");
  EXPECT_EQ(describe(*held_by_top_layers(chain, 2, 4, 5)), "4+3 8+1 ");
}

TEST(ChainMap, ChainFromLevelIsTheDiskBelowTheUpperLayers) {
  const Chain chain = three_layers();
  EXPECT_EQ(resolve(chain), "AACCBBB.....");
  EXPECT_EQ(resolve(chain_from_level(chain, 1)), "AAABBBB.....");
  EXPECT_EQ(resolve(chain_from_level(chain, 2)), "AAAAAA......");
}

TEST(ChainMap, ResolvedMapCoversTheRangeWithDataAndZeros) {
  const Chain chain = three_layers();
  EXPECT_EQ(describe(*resolved_map(chain, 0, 12)), "0+7 7+5z ");
  EXPECT_EQ(describe(*resolved_map(chain_from_level(chain, 2), 0, 12)), "0+6 6+6z ");
  EXPECT_EQ(describe(*resolved_map(chain, 9, 3)), "9+3z ");
}

TEST(ChainMap, ASmallerParentReadsAsZerosPastItsEnd) {
  std::vector<std::unique_ptr<Layer>> layers;
  layers.push_back(std::make_unique<FakeLayer>(16, 'C', std::vector<Extent>{{14, 2, ExtentKind::Data}}));
  layers.push_back(std::make_unique<FakeLayer>(8, 'A', std::vector<Extent>{{0, 8, ExtentKind::Data}}));
  const Chain chain(std::move(layers));
  EXPECT_EQ(describe(*resolved_map(chain, 0, 16)), "0+8 8+6z 14+2 ");
  EXPECT_EQ(describe(*held_by_top_layers(chain, 2, 0, 16)), "0+8 14+2 ");
}

}  // namespace
}  // namespace troy
