// The image writers, each image read back by the format drivers from memory.
// (Reading back with our own reader only proves consistency; the e2e cases
// compare the same images with qemu-img, libvhdi and fixtures/spec_read.py.)
#include "writer.h"

#include <gtest/gtest.h>

#include <numeric>

#include "chain.h"
#include "image.h"
#include "text.h"

namespace troy::writer_test {
namespace {

constexpr uint64_t MiB = 1 << 20;

struct Written {
  std::unique_ptr<Layer> layer;
  Diagnostics diagnostics;
};

std::vector<std::byte> pattern(size_t length, uint8_t seed) {
  std::vector<std::byte> bytes(length);
  for (size_t i = 0; i < length; i++) bytes[i] = static_cast<std::byte>((i * 131 + seed) % 251 + 1);
  return bytes;
}

// Writes an image through `fill`, then opens it from memory, checking every structure.
template <typename Fill>
std::unique_ptr<Layer> write_and_open(const ImageSpec& spec, Fill fill) {
  MemorySink sink("new image");
  auto writer = create_image(spec, sink);
  EXPECT_TRUE(writer.ok()) << (writer.ok() ? "" : writer.error().message);
  if (!writer.ok()) return nullptr;
  fill(**writer);
  EXPECT_TRUE((*writer)->finish().ok());
  Diagnostics diagnostics;
  diagnostics.collect_problems = true;
  OpenOptions options;
  options.diagnostics = &diagnostics;
  auto layer = open_layer(std::make_unique<MemorySource>("new image", std::move(sink.bytes())), options);
  EXPECT_TRUE(layer.ok()) << (layer.ok() ? "" : layer.error().message);
  EXPECT_TRUE(diagnostics.problems.empty()) << diagnostics.problems.front();
  return layer.ok() ? std::move(*layer) : nullptr;
}

std::vector<std::byte> read_all(const Chain& chain) {
  std::vector<std::byte> out(chain.virtual_size());
  EXPECT_TRUE(chain.read(0, out).ok());
  return out;
}

ImageSpec base(ImageFormat format, ImageType type, uint64_t size, uint64_t block_size = 0) {
  ImageSpec spec;
  spec.format = format;
  spec.type = type;
  spec.virtual_size = size;
  spec.block_size = block_size;
  return spec;
}

class BaseImages : public ::testing::TestWithParam<std::tuple<ImageFormat, ImageType>> {};

TEST_P(BaseImages, ReadBackWhatWasWrittenAndZerosElsewhere) {
  const auto [format, type] = GetParam();
  const uint64_t size = 5 * MiB + 3 * 512;  // not a multiple of any block size
  const std::vector<std::byte> data = pattern(MiB + 1024, 7);
  auto layer = write_and_open(base(format, type, size, MiB),
                              [&](ImageWriter& w) {
                                ASSERT_TRUE(w.write(MiB - 512, data).ok());
                                ASSERT_TRUE(w.write(size - 512, std::span(data).first(512)).ok());
                              });
  ASSERT_TRUE(layer);
  EXPECT_EQ(layer->virtual_size(), size);
  std::vector<std::byte> expected(size);
  std::copy(data.begin(), data.end(), expected.begin() + MiB - 512);
  std::copy(data.begin(), data.begin() + 512, expected.end() - 512);
  EXPECT_EQ(read_all(Chain(std::move(layer))), expected);
}

INSTANTIATE_TEST_SUITE_P(Writer, BaseImages,
                         ::testing::Combine(::testing::Values(ImageFormat::Vhd, ImageFormat::Vhdx),
                                            ::testing::Values(ImageType::Fixed, ImageType::Dynamic)));

TEST(Writer, DynamicImagesAllocateOnlyWrittenBlocks) {
  for (const ImageFormat format : {ImageFormat::Vhd, ImageFormat::Vhdx}) {
    auto layer = write_and_open(base(format, ImageType::Dynamic, 64 * MiB, 2 * MiB), [&](ImageWriter& w) {
      ASSERT_TRUE(w.write(10 * MiB, pattern(4096, 1)).ok());
      ASSERT_TRUE(w.write_zeros(20 * MiB, 2 * MiB).ok());  // never held: stays unallocated
    });
    ASSERT_TRUE(layer);
    EXPECT_EQ(layer->info().allocated_blocks, 1u) << format_name(format);
  }
}

// A child over a parent of 0x11 bytes: sector-granular runs, zeros, a whole zero block.
class Children : public ::testing::TestWithParam<std::tuple<ImageFormat, uint32_t>> {};

TEST_P(Children, ResolveOverTheirParentSectorBySector) {
  const auto [format, sector] = GetParam();
  const uint64_t size = 9 * MiB;
  ImageSpec parent_spec = base(format, ImageType::Dynamic, size, 2 * MiB);
  parent_spec.logical_sector_size = sector;
  const std::vector<std::byte> ones(size, std::byte{0x11});
  auto parent = write_and_open(parent_spec, [&](ImageWriter& w) { ASSERT_TRUE(w.write(0, ones).ok()); });
  ASSERT_TRUE(parent);

  ImageSpec child_spec = parent_spec;
  child_spec.type = ImageType::Differencing;
  child_spec.block_size = 0;  // Hyper-V's default for a child
  child_spec.parent = ParentRecord{parent->link_id(), "../base/parent.img", "/lab/base/parent.img", 1700000000};
  std::vector<std::byte> expected = ones;
  const std::vector<std::byte> data = pattern(3 * sector, 9);
  auto child = write_and_open(child_spec, [&](ImageWriter& w) {
    ASSERT_TRUE(w.write(5 * sector, data).ok());                 // a short run inside block 0
    ASSERT_TRUE(w.write_zeros(2 * MiB - sector, sector).ok());   // a zero sector at a block's end
    ASSERT_TRUE(w.write_zeros(4 * MiB, 2 * MiB).ok());           // a whole block of zeros
    ASSERT_TRUE(w.write(size - sector, std::span(data).first(sector)).ok());  // the last sector
  });
  ASSERT_TRUE(child);
  std::copy(data.begin(), data.end(), expected.begin() + 5 * sector);
  std::fill_n(expected.begin() + 2 * MiB - sector, sector, std::byte{0});
  std::fill_n(expected.begin() + 4 * MiB, 2 * MiB, std::byte{0});
  std::copy(data.begin(), data.begin() + sector, expected.end() - sector);

  ASSERT_NE(child->parent_link(), nullptr);
  EXPECT_EQ(child->parent_link()->expected_id, parent->link_id());
  std::vector<std::unique_ptr<Layer>> layers;
  layers.push_back(std::move(child));
  layers.push_back(std::move(parent));
  const Chain chain(std::move(layers));
  EXPECT_EQ(read_all(chain), expected);
  // Only what was written belongs to the child.
  std::vector<Extent> held;
  ASSERT_TRUE(chain.layers()[0]->extents(0, size, held).ok());
  const uint64_t held_bytes = std::accumulate(held.begin(), held.end(), uint64_t{0},
                                              [](uint64_t sum, const Extent& e) { return sum + e.length; });
  EXPECT_EQ(held_bytes, 3 * sector + sector + 2 * MiB + sector);
}

INSTANTIATE_TEST_SUITE_P(Writer, Children,
                         ::testing::Values(std::tuple{ImageFormat::Vhd, 512u}, std::tuple{ImageFormat::Vhdx, 512u},
                                           std::tuple{ImageFormat::Vhdx, 4096u}));

TEST(Writer, ChildLocatorsUseWindowsPaths) {
  ImageSpec spec = base(ImageFormat::Vhdx, ImageType::Differencing, 4 * MiB);
  spec.parent = ParentRecord{{}, "../base/学校.vhdx", "/srv/lab/base/学校.vhdx", 0};
  auto child = write_and_open(spec, [](ImageWriter&) {});
  ASSERT_TRUE(child);
  const ParentLink* link = child->parent_link();
  ASSERT_NE(link, nullptr);
  ASSERT_GE(link->locators.size(), 2u);
  EXPECT_EQ(link->locators[0].kind, "relative_path");
  EXPECT_EQ(link->locators[0].path, "..\\base\\学校.vhdx");
  EXPECT_EQ(link->locators[1].path, "\\srv\\lab\\base\\学校.vhdx");
}

TEST(Writer, SpecLimitsNameTheOption) {
  const auto error_of = [](ImageSpec spec) {
    auto checked = complete_spec(spec);
    return checked.ok() ? std::string("accepted") : checked.error().message;
  };
  EXPECT_NE(error_of(base(ImageFormat::Vhd, ImageType::Dynamic, 0)).find("--size"), std::string::npos);
  EXPECT_NE(error_of(base(ImageFormat::Vhd, ImageType::Dynamic, 1000)).find("--size"), std::string::npos);
  EXPECT_NE(error_of(base(ImageFormat::Vhd, ImageType::Dynamic, 3ull << 40)).find("VHD"), std::string::npos);
  EXPECT_NE(error_of(base(ImageFormat::Vhdx, ImageType::Dynamic, MiB, 3 * MiB)).find("--block-size"),
            std::string::npos);
  ImageSpec vhd4k = base(ImageFormat::Vhd, ImageType::Dynamic, MiB);
  vhd4k.logical_sector_size = 4096;
  EXPECT_NE(error_of(vhd4k).find("--sector-size"), std::string::npos);
  EXPECT_EQ(error_of(base(ImageFormat::Vhdx, ImageType::Dynamic, 64ull << 40)), "accepted");
  EXPECT_EQ(complete_spec(base(ImageFormat::Vhdx, ImageType::Dynamic, MiB))->block_size, 32 * MiB);
}

TEST(Writer, WritesOutsideTheDiskOrSectorsAreRefused) {
  MemorySink sink("x.vhdx");
  auto writer = create_image(base(ImageFormat::Vhdx, ImageType::Dynamic, 4 * MiB), sink);
  ASSERT_TRUE(writer.ok());
  EXPECT_FALSE((*writer)->write(4 * MiB, pattern(512, 1)).ok());
  EXPECT_FALSE((*writer)->write(100, pattern(512, 1)).ok());
  EXPECT_FALSE((*writer)->write(0, pattern(100, 1)).ok());
}

TEST(Utf16, EncodesWhatTheDecoderReads) {
  for (const std::string text : {"base.vhdx", "..\\学校\\基础.vhdx", "emoji \xF0\x9F\x98\x80 ok"}) {
    EXPECT_EQ(utf16_to_utf8(utf8_to_utf16(text, false), false), text);
    EXPECT_EQ(utf16_to_utf8(utf8_to_utf16(text, true), true), text);
  }
  EXPECT_EQ(utf16_to_utf8(utf8_to_utf16("a\xFF" "b", false), false), "a\xEF\xBF\xBD" "b");  // invalid -> U+FFFD
  EXPECT_EQ(utf8_to_utf16("\xC3\xA9", true), (std::vector<std::byte>{std::byte{0}, std::byte{0xE9}}));
}

TEST(WindowsPaths, RelativeGetsTheDotPrefix) {
  EXPECT_EQ(writer_detail::windows_relative_path("base.vhd"), ".\\base.vhd");
  EXPECT_EQ(writer_detail::windows_relative_path("../a/base.vhd"), "..\\a\\base.vhd");
  EXPECT_EQ(writer_detail::windows_path("/srv/lab/x.vhd"), "\\srv\\lab\\x.vhd");
}

}  // namespace
}  // namespace troy::writer_test
