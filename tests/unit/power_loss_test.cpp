// The in-place updaters under simulated power loss: the file loses its power
// at every write in turn, and keeps only what was flushed plus a random
// subset of the 4 KiB pieces written since (as a disk cache may). Each time
// the image must open with no problem, every sector must read as it was
// before or after one of the writes, and the same writes run again must give
// exactly the content of an uninterrupted run.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <random>

#include "chain.h"
#include "image.h"
#include "power_loss_file.h"
#include "updater.h"
#include "writer.h"

namespace troy {
namespace {

constexpr uint64_t MiB = 1 << 20;
constexpr int kTrials = 5;  // survivals per loss point (see after_power_loss)
constexpr bool kEveryTrial = !kAddressSanitizer;  // else one per point, in turn

struct Step {
  bool zero;
  uint64_t offset;
  uint64_t length;
};

std::vector<std::byte> data_for(const Step& step) {
  std::vector<std::byte> out(step.length);
  for (size_t i = 0; i < out.size(); i++) out[i] = static_cast<std::byte>((step.offset / 512 + i * 7) % 253 + 1);
  return out;
}

// Writes into new and allocated blocks, across blocks, partial zeros, a
// whole zero block, the last sector: 512-byte granularity.
std::vector<Step> script(uint64_t size, uint64_t block) {
  return {{false, 0, 4096},          {false, block - 512, 1024}, {false, 3 * block + 512, 512},
          {true, block + 1024, 2048}, {false, 5 * block, 2 * block}, {true, 2 * block, block},
          {false, size - 512, 512},   {true, 6 * block, block},      {false, 4 * block + 512, 1024}};
}

// Runs the script; false when the power was lost.
bool run(std::unique_ptr<PowerLossFile> file, ImageFormat format, const std::vector<Step>& steps,
         std::vector<std::byte>& bytes_out, uint64_t& writes_out, std::vector<std::byte>* after_loss, int trial,
         std::mt19937* random) {
  PowerLossFile* raw = file.get();
  const auto finish = [&] {
    bytes_out = raw->bytes();
    writes_out = raw->writes();
    if (raw->lost_power() && after_loss) *after_loss = raw->after_power_loss(trial, *random);
    return !raw->lost_power();
  };
  std::unique_ptr<RandomAccessFile> base(std::move(file));
  auto updater = format == ImageFormat::Vhd ? vhd::open_for_update(std::move(base))
                                            : vhdx::open_for_update(std::move(base));
  if (!updater) return finish();
  for (const Step& step : steps) {
    const auto done = step.zero ? (*updater)->write_zeros(step.offset, step.length)
                                : (*updater)->write(step.offset, data_for(step));
    if (!done) return finish();
  }
  (void)(*updater)->close();
  return finish();
}

std::unique_ptr<Layer> open_bytes(const std::string& name, const std::vector<std::byte>& bytes,
                                  std::vector<std::string>* problems) {
  Diagnostics diagnostics;
  diagnostics.collect_problems = true;
  OpenOptions options;
  options.diagnostics = &diagnostics;
  auto layer = open_layer(std::make_unique<MemorySource>(name, bytes), options);
  if (problems) {
    problems->insert(problems->end(), diagnostics.problems.begin(), diagnostics.problems.end());
    if (!layer) problems->push_back(layer.error().message);
  }
  return layer ? std::move(*layer) : nullptr;
}

// The disk after each prefix of the script, applied to plain bytes: what a
// sector may read after a power loss is its content after one of them.
std::vector<std::vector<std::byte>> prefix_states(std::vector<std::byte> disk, const std::vector<Step>& steps) {
  std::vector<std::vector<std::byte>> states{disk};
  for (const Step& step : steps) {
    const std::vector<std::byte> data = step.zero ? std::vector<std::byte>(step.length) : data_for(step);
    std::copy(data.begin(), data.end(), disk.begin() + static_cast<ptrdiff_t>(step.offset));
    states.push_back(disk);
  }
  return states;
}

// The first sector whose content is not its content after any prefix, or -1.
int64_t torn_sector(const std::vector<std::byte>& disk, const std::vector<std::vector<std::byte>>& states) {
  for (uint64_t at = 0; at < disk.size(); at += 512) {
    bool allowed = false;
    for (const auto& state : states)
      allowed = allowed || std::memcmp(disk.data() + at, state.data() + at, std::min<uint64_t>(512, disk.size() - at)) == 0;
    if (!allowed) return static_cast<int64_t>(at / 512);
  }
  return -1;
}

// The image's resolved content, over its parent when it has one.
std::vector<std::byte> resolved(const std::vector<std::byte>& image, const std::vector<std::byte>* parent,
                                std::vector<std::string>* problems) {
  std::vector<std::unique_ptr<Layer>> layers;
  layers.push_back(open_bytes("image", image, problems));
  if (!layers.back()) return {};
  if (parent) layers.push_back(open_bytes("parent", *parent, nullptr));
  const Chain chain(std::move(layers));
  std::vector<std::byte> out(chain.virtual_size());
  EXPECT_TRUE(chain.read(0, out).ok());
  return out;
}

struct Case {
  ImageFormat format;
  ImageType type;
  uint64_t block;
};

class PowerLoss : public ::testing::TestWithParam<Case> {};

TEST_P(PowerLoss, EveryWriteThenRerunGivesTheSameBytes) {
  keep_image_buffers_in_heap();
  const Case c = GetParam();
  const uint64_t size = 8 * c.block + 3 * 512;
  // The parent (for a child) and the image to update, written in memory.
  ImageSpec spec;
  spec.format = c.format;
  spec.type = ImageType::Dynamic;
  spec.virtual_size = size;
  spec.block_size = c.block;
  MemorySink parent_sink("parent");
  auto parent_writer = create_image(spec, parent_sink);
  ASSERT_TRUE(parent_writer.ok());
  // Parent data under most of the disk: a child sector that lost its data
  // would read zeros there, which no step ever wrote.
  const std::vector<std::byte> ones(6 * c.block, std::byte{0x11});
  ASSERT_TRUE((*parent_writer)->write(c.block, ones).ok());
  ASSERT_TRUE((*parent_writer)->finish().ok());
  const std::vector<std::byte> parent_bytes = parent_sink.bytes();
  const auto parent = open_bytes("parent", parent_bytes, nullptr);
  ASSERT_TRUE(parent);
  std::vector<std::byte> initial = parent_bytes;
  const std::vector<std::byte>* parent_layer = nullptr;
  if (c.type == ImageType::Differencing) {
    spec.type = ImageType::Differencing;
    spec.parent = ParentRecord{parent->link_id(), "parent", "/parent", 0};
    MemorySink child_sink("child");
    auto child_writer = create_image(spec, child_sink);
    ASSERT_TRUE(child_writer.ok());
    ASSERT_TRUE((*child_writer)->write(3 * c.block, std::vector<std::byte>(4096, std::byte{0x22})).ok());
    ASSERT_TRUE((*child_writer)->finish().ok());
    initial = child_sink.bytes();
    parent_layer = &parent_bytes;
  }
  const std::vector<Step> steps = script(size, c.block);

  std::vector<std::byte> final_bytes;
  uint64_t writes = 0;
  ASSERT_TRUE(run(std::make_unique<PowerLossFile>(initial, -1), c.format, steps, final_bytes, writes, nullptr, 0, nullptr));
  std::vector<std::string> problems;
  const std::vector<std::byte> expected = resolved(final_bytes, parent_layer, &problems);
  ASSERT_TRUE(problems.empty()) << problems.front();
  ASSERT_GT(writes, 5u);
  std::printf("%s %s: power lost at each of %llu writes and flushes, %d survival%s each\n", format_name(c.format).c_str(),
              type_name(c.type).c_str(), static_cast<unsigned long long>(writes), kEveryTrial ? kTrials : 1,
              kEveryTrial ? "s" : "");

  const auto states = prefix_states(resolved(initial, parent_layer, nullptr), steps);
  ASSERT_EQ(states.back(), expected);  // the updater agrees with plain bytes
  std::mt19937 random(2026);
  for (uint64_t loss_at = 1; loss_at <= writes; loss_at++) {
    for (int trial = 0; trial < kTrials; trial++) {
      if (!kEveryTrial && trial != static_cast<int>(loss_at % kTrials)) continue;
      std::vector<std::byte> ignored, disk;
      uint64_t ignored_writes = 0;
      ASSERT_FALSE(run(std::make_unique<PowerLossFile>(initial, static_cast<int64_t>(loss_at)), c.format, steps,
                       ignored, ignored_writes, &disk, trial, &random));
      std::vector<std::string> found;
      const std::vector<std::byte> between = resolved(disk, parent_layer, &found);
      ASSERT_TRUE(found.empty()) << "power lost at write " << loss_at << ": " << found.front();
      // Each sector reads as before or as after some of the writes: never
      // data that was never written there.
      ASSERT_EQ(torn_sector(between, states), -1) << "power lost at write " << loss_at;
      std::vector<std::byte> rerun;
      ASSERT_TRUE(run(std::make_unique<PowerLossFile>(disk, -1), c.format, steps, rerun, ignored_writes, nullptr, 0,
                      nullptr))
          << "re-run after power loss at write " << loss_at;
      ASSERT_EQ(resolved(rerun, parent_layer, nullptr), expected) << "power lost at write " << loss_at;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Updater, PowerLoss,
                         ::testing::Values(Case{ImageFormat::Vhd, ImageType::Dynamic, 512 << 10},
                                           Case{ImageFormat::Vhd, ImageType::Differencing, 512 << 10},
                                           Case{ImageFormat::Vhdx, ImageType::Dynamic, MiB},
                                           Case{ImageFormat::Vhdx, ImageType::Differencing, MiB}));

}  // namespace
}  // namespace troy
