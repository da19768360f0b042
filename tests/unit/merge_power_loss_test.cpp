// merge_into under simulated power loss. A chain is built in memory (a
// child over a dynamic parent, a top over a differencing middle layer, or a
// top merged through the middle into the base, as `--into` does), with
// partial-block runs, runs the target already holds, zero runs, whole zero
// blocks, new blocks and the last sector. The target file loses its power at
// every write and flush of an uninterrupted merge in turn, keeping what was
// flushed plus none, all, the later half or a random subset of the 4 KiB
// pieces written since (power_loss_file.h); in one trial of each point the
// re-run loses power again at a random write. After every loss:
//   - the file opens as a valid image (no problems; merge allowed);
//   - every sector of the target reads its old or its merged content;
//   - a reader that does not accept a merge in progress either is refused
//     ("unfinished") or reads the whole old or the whole merged content;
//   - merge_into run again (a fresh updater with the same DataWriteGuid,
//     the chain over the surviving bytes) gives exactly the content of an
//     uninterrupted merge, an unmarked file, and the same link id.
#include <gtest/gtest.h>

#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <cstdio>
#include <cstring>
#include <optional>
#include <random>
#include <string>

#include "chain.h"
#include "image.h"
#include "merge.h"
#include "power_loss_file.h"
#include "updater.h"
#include "writer.h"

namespace troy {
namespace {

constexpr uint64_t MiB = 1 << 20;
constexpr uint64_t kSector = 512;
constexpr uint64_t kSize = 8 * MiB + 3 * kSector;  // a partial last block
constexpr int kTrials = 5;  // 0 none, 1 all, 2 later half, 3 random, 4 random and a second loss in the re-run
// Under AddressSanitizer each loss point gets one of the trials, in turn;
// the Release build runs them all.
constexpr bool kEveryTrial = !kAddressSanitizer;
// The DataWriteGuid the merge gives a VHDX target (troy merge keeps it in
// its journal, so that a re-run gives the same).
constexpr Guid kMergedId = {0x6d, 0x65, 0x72, 0x67, 0x65, 0x64, 0x2d, 0x69, 0x64, 0x2d, 0x66, 0x69, 0x78, 0x65, 0x64, 0x21};

std::vector<std::byte> noise(uint64_t length, uint32_t seed) {
  std::mt19937 random(seed);
  std::vector<std::byte> out(length);
  for (std::byte& b : out) b = static_cast<std::byte>(random() & 0xff);
  return out;
}

struct MergeCase {
  const char* name;
  ImageFormat format;
  uint64_t base_block;
  uint64_t upper_block;
  int layers;           // 2: child over base; 3: top over mid over base
  size_t target_level;  // the layer merged into (chain level, top = 0)
};

std::ostream& operator<<(std::ostream& out, const MergeCase& c) { return out << c.name; }

// An image's bytes read in place (the opened layer must not outlive them):
// the test opens thousands of images, copying each would be most of its time.
class ViewSource final : public Source {
 public:
  ViewSource(std::string name, const std::vector<std::byte>& bytes) : name_(std::move(name)), bytes_(bytes) {}
  uint64_t size() const override { return bytes_.size(); }
  const std::string& name() const override { return name_; }
  Result<void> read_at(uint64_t offset, std::span<std::byte> out) const override {
    if (out.empty()) return success();
    if (offset > bytes_.size() || out.size() > bytes_.size() - offset)
      return Error{name_ + ": read past the end of the file"};
    std::memcpy(out.data(), bytes_.data() + offset, out.size());
    return success();
  }

 private:
  std::string name_;
  const std::vector<std::byte>& bytes_;
};

struct Opened {
  std::unique_ptr<Layer> layer;
  std::vector<std::string> problems;
  std::string error;
};

Opened open_bytes(const std::string& name, const std::vector<std::byte>& bytes, bool merge_in_progress_ok) {
  Diagnostics diagnostics;
  diagnostics.collect_problems = true;
  OpenOptions options;
  options.diagnostics = &diagnostics;
  options.merge_in_progress_ok = merge_in_progress_ok;
  auto layer = open_layer(std::make_unique<ViewSource>(name, bytes), options);
  Opened out;
  out.problems = diagnostics.problems;
  if (layer) out.layer = std::move(*layer);
  else out.error = layer.error().message;
  return out;
}

// The images of a case, top first, and what the target reads before and
// after an uninterrupted merge.
class MergeChain {
 public:
  explicit MergeChain(const MergeCase& c) : case_(c) {}

  // Builds the layers; false (with a test failure) when that fails.
  bool build() {
    ImageSpec spec;
    spec.format = case_.format;
    spec.type = ImageType::Dynamic;
    spec.virtual_size = kSize;
    spec.block_size = case_.base_block;
    // The base: data in [1 MiB, 5 MiB) and [7.5 MiB, 8 MiB), nothing
    // elsewhere. The latter lies under the top's last blocks: where a
    // differencing target allocates late in the merge, over parent data,
    // losing the data but keeping the metadata that points at it shows.
    const std::vector<std::byte> base_data = noise(4 * MiB, 1);
    std::vector<std::byte> base = make(spec, [&](ImageWriter& w) -> Result<void> {
      TROY_TRY(w.write(1 * MiB, base_data));
      return w.write(7 * MiB + 512 * 1024, noise(512 * 1024, 10));
    });
    if (base.empty()) return false;
    auto below_top = base;
    std::vector<std::vector<std::byte>> images{base};
    spec.type = ImageType::Differencing;
    spec.block_size = case_.upper_block;
    if (case_.layers == 3) {
      // The middle layer: a run over base data, a partial zero run over it,
      // a run where the base holds nothing.
      std::vector<std::byte> mid = make(child_spec(spec, base, "base"), [&](ImageWriter& w) -> Result<void> {
        TROY_TRY(w.write(1 * MiB + 64 * 1024, noise(128 * 1024, 2)));
        TROY_TRY(w.write_zeros(2 * MiB, 8192));
        return w.write(5 * MiB + 4096, noise(8192, 3));
      });
      if (mid.empty()) return false;
      images.insert(images.begin(), mid);
      below_top = mid;
    }
    // The top: the first sector (a new block), a few sectors into an
    // allocated block, a run of the base's own bytes (nothing to write into
    // the base), a run across a block boundary, a partial zero run, a whole
    // 2 MiB zero range (a ZERO block of a VHDX child), a few sectors and a
    // whole block where the base holds nothing, the last sector; over a
    // middle layer also the base's bytes where the middle changed them.
    std::vector<std::byte> top = make(child_spec(spec, below_top, case_.layers == 3 ? "mid" : "base"),
                                      [&](ImageWriter& w) -> Result<void> {
      TROY_TRY(w.write(0, noise(4096, 4)));
      TROY_TRY(w.write(1 * MiB + 512, noise(1536, 5)));
      TROY_TRY(w.write(2 * MiB + 65536, std::span(base_data).subspan(MiB + 65536, 4096)));
      TROY_TRY(w.write(2 * MiB - 1024, noise(2048, 6)));
      TROY_TRY(w.write_zeros(3 * MiB + 4096, 8192));
      TROY_TRY(w.write_zeros(4 * MiB, 2 * MiB));
      TROY_TRY(w.write(6 * MiB + 4096, noise(4096, 7)));
      TROY_TRY(w.write(7 * MiB, noise(MiB, 8)));
      TROY_TRY(w.write(kSize - kSector, noise(kSector, 9)));
      if (case_.layers == 3) TROY_TRY(w.write(1 * MiB + 64 * 1024, std::span(base_data).subspan(64 * 1024, 16384)));
      return success();
    });
    if (top.empty()) return false;
    images.insert(images.begin(), top);
    images_ = std::move(images);
    old_ = resolved(images_[case_.target_level]);
    new_ = read_top();
    return !old_.empty() && !new_.empty();
  }

  const std::vector<std::byte>& target_bytes() const { return images_[case_.target_level]; }
  const std::vector<std::byte>& old_content() const { return old_; }
  const std::vector<std::byte>& new_content() const { return new_; }

  // The chain with `target` as the target's bytes (opened accepting a merge
  // in progress); nullopt (with a test failure) when a layer does not open.
  std::optional<Chain> chain_over(const std::vector<std::byte>& target) const {
    std::vector<std::unique_ptr<Layer>> layers;
    for (size_t level = 0; level < images_.size(); level++) {
      const bool is_target = level == case_.target_level;
      Opened opened = open_bytes(is_target ? "target" : "layer", is_target ? target : images_[level], true);
      if (!opened.layer) {
        ADD_FAILURE() << "level " << level << " does not open: " << opened.error;
        return std::nullopt;
      }
      layers.push_back(std::move(opened.layer));
    }
    return Chain(std::move(layers));
  }

  // What the target reads with `target` as its bytes, over the layers below
  // it; empty (with the problems in `problems`) when it does not open.
  std::vector<std::byte> resolved(const std::vector<std::byte>& target, std::vector<std::string>* problems = nullptr,
                                  Guid* link_id = nullptr) const {
    std::vector<std::unique_ptr<Layer>> layers;
    Opened opened = open_bytes("target", target, true);
    if (problems) {
      problems->insert(problems->end(), opened.problems.begin(), opened.problems.end());
      if (!opened.layer) problems->push_back(opened.error);
    }
    if (!opened.layer) return {};
    if (link_id) *link_id = opened.layer->link_id();
    layers.push_back(std::move(opened.layer));
    for (size_t level = case_.target_level + 1; level < images_.size(); level++)
      layers.push_back(open_bytes("below", images_[level], false).layer);
    const Chain chain(std::move(layers));
    std::vector<std::byte> out(chain.virtual_size());
    if (!chain.read(0, out).ok()) return {};
    return out;
  }

 private:
  template <typename Fill>
  std::vector<std::byte> make(const ImageSpec& spec, Fill fill) {
    MemorySink sink("image");
    auto writer = create_image(spec, sink);
    if (!writer) {
      ADD_FAILURE() << writer.error().message;
      return {};
    }
    const Result<void> filled = fill(**writer);
    if (!filled) {
      ADD_FAILURE() << filled.error().message;
      return {};
    }
    if (!(*writer)->finish()) {
      ADD_FAILURE() << "finish failed";
      return {};
    }
    return std::move(sink.bytes());
  }

  ImageSpec child_spec(ImageSpec spec, const std::vector<std::byte>& parent, const std::string& name) const {
    const Opened opened = open_bytes(name, parent, false);
    EXPECT_TRUE(opened.layer) << opened.error;
    spec.parent = ParentRecord{opened.layer ? opened.layer->link_id() : Guid{}, name, "/" + name, 0};
    return spec;
  }

  std::vector<std::byte> read_top() const {
    std::vector<std::unique_ptr<Layer>> layers;
    for (const auto& image : images_) layers.push_back(open_bytes("layer", image, false).layer);
    const Chain chain(std::move(layers));
    std::vector<std::byte> out(chain.virtual_size());
    EXPECT_TRUE(chain.read(0, out).ok());
    return out;
  }

  MergeCase case_;
  std::vector<std::vector<std::byte>> images_;  // top first
  std::vector<std::byte> old_, new_;
};

struct MergeRun {
  bool completed = false;
  std::string error;                // an error other than the power loss
  std::vector<std::byte> bytes;     // the file as the merge left it (its view)
  std::vector<std::byte> survived;  // after a power loss: what the disk kept
  uint64_t writes = 0;
  MergeStats stats;
};

// merge_into over a PowerLossFile holding `target`, losing power at its
// `loss_at`th write or flush (-1: never); on a loss `survived` is what the
// disk keeps in trial `trial`.
MergeRun run_merge(const MergeCase& c, const MergeChain& images, const std::vector<std::byte>& target, int64_t loss_at,
                  int trial, std::mt19937& random) {
  MergeRun run;
  PowerLossFile file(target, loss_at);
  auto finish = [&] {
    run.bytes = file.bytes();
    run.writes = file.writes();
    if (file.lost_power()) {
      run.survived = file.after_power_loss(trial, random);
      run.error.clear();
    }
  };
  std::optional<Chain> chain = images.chain_over(target);
  if (!chain) {
    run.error = "the chain does not open";
    return run;
  }
  UpdateOptions options;
  options.data_write_guid = kMergedId;
  // As troy merge does: the blocks it may allocate, counted from the
  // metadata, so a VHD reserves their room with the merge mark's flush.
  const Layer& target_layer = *chain->layers()[c.target_level];
  auto scope = measure_merge(*chain, c.target_level, target_layer.info().block_size);
  if (!scope) {
    run.error = scope.error().message;
    return run;
  }
  options.new_blocks_expected = scope->target_blocks_to_allocate;
  // Borrowed: open_for_update destroys what it is given when it fails.
  auto updater = c.format == ImageFormat::Vhd ? vhd::open_for_update(std::make_unique<BorrowedFile>(file), options)
                                              : vhdx::open_for_update(std::make_unique<BorrowedFile>(file), options);
  if (!updater) {
    run.error = updater.error().message;
    finish();
    return run;
  }
  MergeWalk walk;
  walk.target_level = c.target_level;
  auto merged = merge_into(*chain, walk, **updater, [] { return success(); });
  if (merged) {
    run.completed = true;
    run.stats = *merged;
  } else {
    run.error = merged.error().message;
  }
  finish();
  return run;
}

// The first sector of `disk` that reads neither as in `old_content` nor as
// in `new_content`, or -1.
int64_t mixed_sector(const std::vector<std::byte>& disk, const std::vector<std::byte>& old_content,
                     const std::vector<std::byte>& new_content) {
  if (disk.size() != old_content.size()) return 0;
  for (uint64_t at = 0; at < disk.size(); at += kSector)
    if (std::memcmp(disk.data() + at, old_content.data() + at, kSector) != 0 &&
        std::memcmp(disk.data() + at, new_content.data() + at, kSector) != 0)
      return static_cast<int64_t>(at / kSector);
  return -1;
}

// What every reader sees in the file a power loss left. Empty when all is
// well, else what is wrong.
std::string check_between(const MergeChain& images, const std::vector<std::byte>& survived) {
  std::vector<std::string> problems;
  const std::vector<std::byte> content = images.resolved(survived, &problems);
  if (!problems.empty()) return "the file does not open as a valid image: " + problems.front();
  if (content.empty()) return "the target does not read";
  const int64_t sector = mixed_sector(content, images.old_content(), images.new_content());
  if (sector >= 0)
    return "sector " + std::to_string(sector) + " reads neither its old nor its merged content";
  // A reader that knows nothing of merges: refused, or shown a whole disk.
  Opened plain = open_bytes("target", survived, false);
  if (!plain.layer) {
    if (plain.error.find("unfinished") == std::string::npos) return "refused, but not as unfinished: " + plain.error;
    return "";
  }
  if (content != images.old_content() && content != images.new_content())
    return "no merge-in-progress mark, but the content is partly merged";
  return "";
}

// A completed merge: the merged content, no mark, the expected link id.
std::string check_complete(const MergeChain& images, const std::vector<std::byte>& bytes,
                           const Guid& expected_id) {
  std::vector<std::string> problems;
  Guid id{};
  const std::vector<std::byte> content = images.resolved(bytes, &problems, &id);
  if (!problems.empty()) return "the merged file does not open as a valid image: " + problems.front();
  if (content != images.new_content()) {
    const int64_t sector = mixed_sector(content, images.new_content(), images.new_content());
    return "the merged content differs from an uninterrupted merge's, first at sector " + std::to_string(sector);
  }
  Opened plain = open_bytes("target", bytes, false);
  if (!plain.layer) return "the merged file is still refused: " + plain.error;
  if (id != expected_id) return "the merged target's link id is not the uninterrupted merge's";
  return "";
}

class MergePowerLoss : public ::testing::TestWithParam<MergeCase> {
 protected:
  // Every run copies images of several MiB a few times; glibc would map and
  // unmap each copy afresh (page faults were two thirds of the time), so
  // large blocks are kept in the heap instead.
  static void SetUpTestSuite() {
#ifdef __GLIBC__
    mallopt(M_MMAP_THRESHOLD, 256 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
  }
};

TEST_P(MergePowerLoss, EveryWriteThenRerunGivesTheUninterruptedContent) {
  keep_image_buffers_in_heap();
  const MergeCase c = GetParam();
  MergeChain images(c);
  ASSERT_TRUE(images.build());
  ASSERT_NE(images.old_content(), images.new_content());
  std::mt19937 random(2026);

  const MergeRun clean = run_merge(c, images, images.target_bytes(), -1, 0, random);
  ASSERT_TRUE(clean.completed) << clean.error;
  Guid expected_id{};
  {
    const Opened target = open_bytes("target", images.target_bytes(), false);
    ASSERT_TRUE(target.layer) << target.error;
    expected_id = c.format == ImageFormat::Vhdx ? kMergedId : target.layer->link_id();
  }
  ASSERT_EQ(check_complete(images, clean.bytes, expected_id), "");
  ASSERT_GT(clean.stats.runs, 5u);
  ASSERT_GT(clean.writes, 10u);
  // A finished merge run again writes nothing.
  const MergeRun again = run_merge(c, images, clean.bytes, -1, 0, random);
  ASSERT_TRUE(again.completed) << again.error;
  EXPECT_EQ(again.stats.runs, 0u);
  EXPECT_EQ(check_complete(images, again.bytes, expected_id), "");
  std::printf("%s: %llu runs; power lost at each of %llu writes and flushes, %d survival%s each\n", c.name,
              static_cast<unsigned long long>(clean.stats.runs), static_cast<unsigned long long>(clean.writes),
              kEveryTrial ? kTrials : 1, kEveryTrial ? "s" : "");

  int refused = 0, unmarked = 0;
  for (uint64_t loss_at = 1; loss_at <= clean.writes; loss_at++) {
    for (int trial = 0; trial < kTrials; trial++) {
      if (!kEveryTrial && trial != static_cast<int>(loss_at % kTrials)) continue;
      const std::string where = "power lost at write " + std::to_string(loss_at) + ", trial " + std::to_string(trial);
      const MergeRun lost = run_merge(c, images, images.target_bytes(), static_cast<int64_t>(loss_at), trial, random);
      ASSERT_FALSE(lost.completed) << where << ": the merge did not lose power";
      ASSERT_EQ(lost.error, "") << where;
      std::vector<std::byte> disk = lost.survived;
      ASSERT_EQ(check_between(images, disk), "") << where;
      (open_bytes("target", disk, false).layer ? unmarked : refused)++;
      if (trial == 4) {
        // The re-run loses power too, at a random one of its writes.
        const MergeRun count = run_merge(c, images, disk, -1, 0, random);
        ASSERT_TRUE(count.completed) << where << ": re-run: " << count.error;
        if (count.writes > 0) {
          const int64_t second = static_cast<int64_t>(1 + random() % count.writes);
          const MergeRun lost_again = run_merge(c, images, disk, second, 3, random);
          ASSERT_FALSE(lost_again.completed) << where << ", then at write " << second << " of the re-run";
          ASSERT_EQ(lost_again.error, "") << where << ", then at write " << second << " of the re-run";
          disk = lost_again.survived;
          ASSERT_EQ(check_between(images, disk), "") << where << ", then at write " << second << " of the re-run";
        }
      }
      const MergeRun rerun = run_merge(c, images, disk, -1, 0, random);
      ASSERT_TRUE(rerun.completed) << where << ": the re-run failed: " << rerun.error;
      ASSERT_EQ(check_complete(images, rerun.bytes, expected_id), "") << where << ", after the re-run";
    }
  }
  // Both sides of the mark were seen.
  EXPECT_GT(refused, 0);
  EXPECT_GT(unmarked, 0);
}

INSTANTIATE_TEST_SUITE_P(
    Merge, MergePowerLoss,
    ::testing::Values(MergeCase{"VhdChildIntoDynamic", ImageFormat::Vhd, 512 << 10, 2 * MiB, 2, 1},
                      MergeCase{"VhdxChildIntoDynamic", ImageFormat::Vhdx, MiB, 2 * MiB, 2, 1},
                      MergeCase{"VhdTopIntoDifferencing", ImageFormat::Vhd, 512 << 10, 512 << 10, 3, 1},
                      MergeCase{"VhdxTopIntoDifferencing", ImageFormat::Vhdx, MiB, 2 * MiB, 3, 1},
                      MergeCase{"VhdTopIntoBase", ImageFormat::Vhd, 2 * MiB, 512 << 10, 3, 2},
                      MergeCase{"VhdxTopIntoBase", ImageFormat::Vhdx, MiB, MiB, 3, 2}),
    [](const ::testing::TestParamInfo<MergeCase>& param) { return std::string(param.param.name); });

}  // namespace
}  // namespace troy
