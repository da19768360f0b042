// Native-VHD-boot labs (lab/vhdboot.h): the partition rule and its choice
// over a fake sysfs tree, the paths the manifest may name, which versions a
// base still needs, and the whole job on plain files: the delta merged into
// the base (which takes its id), the child made fresh, a second run writing
// nothing, a base that is not the delta's refused unchanged.
#include <stdlib.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "chain.h"
#include "console.h"
#include "image.h"
#include "vhdboot.h"
#include "writer.h"

namespace troy::cli {
namespace {

namespace fs = std::filesystem;
constexpr uint64_t MiB = 1 << 20;

class TempFolder {
 public:
  TempFolder() {
    std::string pattern = (fs::temp_directory_path() / "troy-vhdboot.XXXXXX").string();
    if (::mkdtemp(pattern.data()) != nullptr) path_ = pattern;
  }
  ~TempFolder() {
    std::error_code ignored;
    if (!path_.empty()) fs::remove_all(path_, ignored);
  }
  std::string operator/(const std::string& name) const { return (fs::path(path_) / name).string(); }

 private:
  fs::path path_;
};

void write_text(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(PartitionRule, ParsesEachKeyOnce) {
  auto rule = parse_partition_rule("number=2,size=1048576,label=TROY*");
  ASSERT_TRUE(rule.ok()) << rule.error().message;
  EXPECT_EQ(*rule->number, 2u);
  EXPECT_EQ(*rule->size, 1048576u);
  EXPECT_EQ(rule->label, "TROY*");
  EXPECT_EQ(describe(*rule), "number=2,size=1048576,label=TROY*");
  EXPECT_FALSE(parse_partition_rule("").ok());
  EXPECT_FALSE(parse_partition_rule("number=0").ok());
  EXPECT_FALSE(parse_partition_rule("number=2,number=3").ok());
  EXPECT_FALSE(parse_partition_rule("model=x").ok());
  EXPECT_FALSE(parse_partition_rule("size=12k").ok());
  EXPECT_FALSE(parse_partition_rule("number=2,").ok());
}

TEST(PartitionPath, OnlyPlainPathsUnderTheRoot) {
  EXPECT_TRUE(check_partition_path("troy/base.vhdx", "BASE").ok());
  EXPECT_TRUE(check_partition_path("base.vhdx", "BASE").ok());
  for (const char* bad : {"", "/troy/base.vhdx", "../base.vhdx", "troy//base.vhdx", "troy/./b", "a\\b", "c:x", "a b"})
    EXPECT_FALSE(check_partition_path(bad, "BASE").ok()) << bad;
}

// A fake /sys/block/vda with three partitions and their device files: two
// NTFS boot sectors (labels given by the fake reader) and one other.
struct FakeDisk {
  TempFolder folder;
  FakeDisk() {
    add("vda1", 1, 2048, false, "");
    add("vda2", 2, 4096, true, "");
    add("vda3", 3, 8192, true, "");
  }
  void add(const std::string& name, unsigned number, uint64_t sectors, bool ntfs, const std::string&) {
    write_text(folder / ("sys/vda/" + name + "/partition"), std::to_string(number) + "\n");
    write_text(folder / ("sys/vda/" + name + "/size"), std::to_string(sectors) + "\n");
    std::string sector(512, '\0');
    if (ntfs) {
      sector.replace(3, 8, "NTFS    ");
      sector[510] = static_cast<char>(0x55);
      sector[511] = static_cast<char>(0xAA);
    }
    write_text(folder / ("dev/" + name), sector);
  }
  Result<std::vector<PartitionInfo>> list(bool labels) {
    return list_partitions(folder / "sys", folder / "dev", "vda", labels, [](const std::string& device) {
      return Result<std::string>(device.ends_with("vda2") ? std::string("TROY") : std::string("DATA"));
    });
  }
};

TEST(PartitionChoice, ExactlyOneNtfsPartitionMatches) {
  FakeDisk disk;
  auto partitions = disk.list(true);
  ASSERT_TRUE(partitions.ok()) << partitions.error().message;
  ASSERT_EQ(partitions->size(), 3u);
  EXPECT_EQ((*partitions)[1].size, 4096u * 512);
  EXPECT_FALSE((*partitions)[0].ntfs);
  auto by_label = choose_partition(*partitions, *parse_partition_rule("label=TROY"), "vda");
  ASSERT_TRUE(by_label.ok()) << by_label.error().message;
  EXPECT_EQ(by_label->name, "vda2");
  auto by_number = choose_partition(*partitions, *parse_partition_rule("number=3"), "vda");
  ASSERT_TRUE(by_number.ok());
  EXPECT_EQ(by_number->name, "vda3");
  // Not NTFS: never chosen, even when the number says so.
  auto not_ntfs = choose_partition(*partitions, *parse_partition_rule("number=1"), "vda");
  ASSERT_FALSE(not_ntfs.ok());
  EXPECT_NE(not_ntfs.error().message.find("vda1 (number 1, 1048576 bytes, not NTFS)"), std::string::npos)
      << not_ntfs.error().message;
  // Two NTFS partitions of any label: refused, never guessed.
  auto several = choose_partition(*partitions, *parse_partition_rule("label=*"), "vda");
  ASSERT_FALSE(several.ok());
  EXPECT_NE(several.error().message.find("2 NTFS partitions match"), std::string::npos) << several.error().message;
}

TEST(BasePlan, MergesWhatComesAfterTheHeldVersion) {
  const std::vector<VersionId> versions = {{"v1", "AAAA"}, {"v2", "BBBB"}, {"v3", "CCCC"}};
  auto plan = plan_base(versions, BaseState{"bbbb", "", "vhdx"}, "base.vhdx");
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->held, 1u);
  EXPECT_EQ(plan->to_merge, std::vector<size_t>{2});
  EXPECT_FALSE(plan->resume);
  auto pending = plan_base(versions, BaseState{"BBBB", "/p/v2.avhdx", "vhdx"}, "base.vhdx");
  ASSERT_TRUE(pending.ok());
  EXPECT_TRUE(pending->resume);
  auto foreign = plan_base(versions, BaseState{"DDDD", "", "vhdx"}, "base.vhdx");
  ASSERT_FALSE(foreign.ok());
  EXPECT_NE(foreign.error().message.find("base.vhdx: its id DDDD is no version this lab published"), std::string::npos);
}

// Images on plain files: v1 (a base with data), v2 (the teacher's child of
// v1, made in another folder, so its locators name the teacher's file).
// With ImageFormat::Vhd: the same as VHD files (base.vhd, student.vhd).
struct Lab {
  ImageFormat format;
  std::string ext;
  TempFolder folder;
  std::string base;
  std::string child;
  std::string teacher_base;
  std::string delta;
  Console console{.quiet = true};

  static std::vector<std::byte> pattern(size_t size, uint8_t seed) {
    std::vector<std::byte> bytes(size);
    for (size_t i = 0; i < size; i++) bytes[i] = static_cast<std::byte>((i * 31 + seed) & 0xff);
    return bytes;
  }
  static void write_image(const std::string& path, const ImageSpec& spec,
                          const std::vector<std::pair<uint64_t, std::vector<std::byte>>>& writes) {
    MemorySink sink("image");
    auto completed = complete_spec(spec);
    ASSERT_TRUE(completed.ok()) << completed.error().message;
    auto writer = create_image(*completed, sink);
    ASSERT_TRUE(writer.ok()) << writer.error().message;
    for (const auto& [offset, bytes] : writes) ASSERT_TRUE((*writer)->write(offset, bytes).ok());
    ASSERT_TRUE((*writer)->finish().ok());
    fs::create_directories(fs::path(path).parent_path());
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(sink.bytes().data()), static_cast<std::streamsize>(sink.bytes().size()));
  }
  static std::unique_ptr<Layer> open(const std::string& path) {
    Diagnostics diagnostics;
    OpenOptions options;
    options.diagnostics = &diagnostics;
    auto layer = open_layer(path, options);
    EXPECT_TRUE(layer.ok()) << (layer.ok() ? "" : layer.error().message);
    return layer.ok() ? std::move(*layer) : nullptr;
  }
  static ParentRecord record_of(const std::string& parent, const std::string& relative) {
    return ParentRecord{open(parent)->link_id(), relative, parent, 0};
  }
  ImageSpec spec(const std::optional<ParentRecord>& parent) const {
    ImageSpec spec;
    spec.format = format;
    spec.type = parent ? ImageType::Differencing : ImageType::Dynamic;
    spec.virtual_size = 16 * MiB;
    spec.block_size = 2 * MiB;
    spec.parent = parent;
    return spec;
  }
  // Reads the whole virtual disk of `path`'s chain.
  static std::vector<std::byte> disk(const std::string& path, const std::vector<std::string>& parents = {}) {
    ChainOptions options;
    Diagnostics diagnostics;
    options.open.diagnostics = &diagnostics;
    options.parents = parents;
    auto chain = open_chain(path, options);
    EXPECT_TRUE(chain.ok()) << (chain.ok() ? "" : chain.error().message);
    if (!chain.ok()) return {};
    std::vector<std::byte> bytes(chain->virtual_size());
    EXPECT_TRUE(chain->read(0, bytes).ok());
    return bytes;
  }

  explicit Lab(ImageFormat image_format = ImageFormat::Vhdx)
      : format(image_format), ext(format == ImageFormat::Vhd ? "vhd" : "vhdx"),
        base(folder / ("disk/troy/base." + ext)), child(folder / ("disk/troy/student." + ext)),
        teacher_base(folder / ("teacher/base." + ext)), delta(folder / ("disk/troy/incoming/v2." + ext)) {
    write_image(base, spec(std::nullopt), {{0, pattern(MiB, 1)}, {4 * MiB, pattern(3 * MiB, 2)}});
    fs::create_directories(fs::path(teacher_base).parent_path());
    fs::copy_file(base, teacher_base);
    write_image(delta, spec(record_of(teacher_base, "base." + ext)),
                {{512, pattern(4096, 3)}, {5 * MiB, pattern(MiB, 4)}, {12 * MiB, pattern(2 * MiB, 5)}});
    write_image(child, spec(record_of(base, "base." + ext)), {{10 * MiB, pattern(MiB, 6)}});
  }
  Result<VhdBootOutcome> run(bool keep_child = false) {
    return run_vhdboot(VhdBootJob{base, child, {delta}, keep_child}, console);
  }
};

// ---- the payload's side ----

TEST(VhdBootPayload, DeltasAndStateLiveBesideTheBase) {
  EXPECT_EQ(delta_folder("/run/troy/ntfs/troy/base.vhdx"), "/run/troy/ntfs/troy/troy-deltas");
  EXPECT_EQ(delta_download_path("/run/troy/ntfs/troy/base.vhdx", "v2"), "/run/troy/ntfs/troy/troy-deltas/v2.vhdx");
  EXPECT_EQ(delta_download_path("/run/troy/ntfs/troy/base.vhd", "v2"), "/run/troy/ntfs/troy/troy-deltas/v2.vhd");
  EXPECT_EQ(state_file_path("/mnt/base.vhdx"), "/mnt/troy-state");
}

TEST(VhdBootPayload, RoomForTheDeltasAndTheirMerge) {
  EXPECT_EQ(room_needed(100 * MiB), 264 * MiB);
  EXPECT_TRUE(check_room(264 * MiB, 100 * MiB, "/mnt/troy").ok());
  auto short_of = check_room(200 * MiB, 100 * MiB, "/mnt/troy");
  ASSERT_FALSE(short_of.ok());
  EXPECT_NE(short_of.error().message.find("/mnt/troy"), std::string::npos) << short_of.error().message;
  EXPECT_NE(short_of.error().message.find("nothing downloaded"), std::string::npos) << short_of.error().message;
  // An absurd size (a hostile manifest's) never wraps around into "enough".
  EXPECT_FALSE(check_room(UINT64_MAX / 2, UINT64_MAX, "/mnt").ok());
}

TEST(VhdBootPayload, TheChildIsKeptWhenTheManifestOrTheMachineSaysSo) {
  EXPECT_FALSE(keeps_child(false, false));
  EXPECT_TRUE(keeps_child(true, false));
  EXPECT_TRUE(keeps_child(false, true));
}

TEST(VhdBootPayload, TheStateFileIsMadeOnceAndKeptAfter) {
  TempFolder folder;
  const std::string path = state_file_path(folder / "base.vhdx");
  ASSERT_TRUE(prepare_state_file(path).ok());
  EXPECT_EQ(fs::file_size(path), MiB);
  EXPECT_EQ(read_all(path), std::string(MiB, '\0'));
  std::ofstream(path, std::ios::binary | std::ios::in) << "kept";
  ASSERT_TRUE(prepare_state_file(path).ok());
  EXPECT_EQ(read_all(path).substr(0, 4), "kept");
}

TEST(VhdBootJob, MergesTheDeltaAndGivesAFreshChild) {
  Lab lab;
  const std::vector<std::byte> v2 = Lab::disk(lab.delta, {lab.teacher_base});
  auto outcome = lab.run();
  ASSERT_TRUE(outcome.ok()) << outcome.error().message;
  EXPECT_EQ(outcome->merged.size(), 1u);
  EXPECT_TRUE(outcome->child_reset);
  EXPECT_TRUE(Lab::disk(lab.base) == v2);
  // The base carries the delta's id, so the next delta's parent id proves it.
  EXPECT_EQ(Lab::open(lab.base)->link_id(), Lab::open(lab.delta)->link_id());
  EXPECT_TRUE(child_is_fresh(lab.child, lab.base));
  EXPECT_TRUE(Lab::disk(lab.child) == v2);
  // The delta now names the local base.
  EXPECT_EQ(Lab::open(lab.delta)->parent_link()->locators.front().path, "..\\base.vhdx");

  // A second run writes nothing.
  const std::string base_bytes = read_all(lab.base);
  const std::string child_bytes = read_all(lab.child);
  auto again = lab.run();
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_TRUE(again->merged.empty());
  EXPECT_EQ(again->skipped.size(), 1u);
  EXPECT_FALSE(again->child_reset);
  EXPECT_TRUE(read_all(lab.base) == base_bytes);
  EXPECT_TRUE(read_all(lab.child) == child_bytes);
}

TEST(VhdBootJob, ResetsAUsedChildUnlessKept) {
  Lab lab;
  ASSERT_TRUE(lab.run().ok());
  Lab::write_image(lab.child, lab.spec(Lab::record_of(lab.base, "base.vhdx")), {{0, Lab::pattern(4096, 9)}});
  ASSERT_FALSE(child_is_fresh(lab.child, lab.base));
  auto kept = lab.run(true);
  ASSERT_TRUE(kept.ok());
  EXPECT_TRUE(kept->child_kept);
  EXPECT_FALSE(child_is_fresh(lab.child, lab.base));
  auto reset = lab.run(false);
  ASSERT_TRUE(reset.ok());
  EXPECT_TRUE(reset->child_reset);
  EXPECT_TRUE(child_is_fresh(lab.child, lab.base));
}

TEST(VhdBootJob, RefusesABaseThatIsNotTheDeltasBase) {
  Lab lab;
  Lab::write_image(lab.base, lab.spec(std::nullopt), {{0, Lab::pattern(MiB, 7)}});
  const std::string before = read_all(lab.base);
  const std::string child_before = read_all(lab.child);
  auto outcome = lab.run();
  ASSERT_FALSE(outcome.ok());
  EXPECT_NE(outcome.error().message.find("the base is not this delta's base; nothing merged"), std::string::npos)
      << outcome.error().message;
  EXPECT_TRUE(read_all(lab.base) == before);
  EXPECT_TRUE(read_all(lab.child) == child_before);
}

// A VHD base keeps its UniqueId when merged into: the job gives it the
// delta's (both footers), and the fresh child is a VHD naming it.
TEST(VhdBootJob, AVhdBaseTakesTheDeltasUniqueIdAndAVhdChild) {
  Lab lab(ImageFormat::Vhd);
  const std::vector<std::byte> v2 = Lab::disk(lab.delta, {lab.teacher_base});
  auto outcome = lab.run();
  ASSERT_TRUE(outcome.ok()) << outcome.error().message;
  EXPECT_EQ(outcome->merged.size(), 1u);
  EXPECT_TRUE(Lab::disk(lab.base) == v2);
  EXPECT_EQ(Lab::open(lab.base)->link_id(), Lab::open(lab.delta)->link_id());
  const std::string bytes = read_all(lab.base);
  EXPECT_EQ(bytes.substr(0, 512), bytes.substr(bytes.size() - 512));  // the footer copy at 0 too
  auto state = read_base_state(lab.base);
  ASSERT_TRUE(state.ok()) << state.error().message;
  EXPECT_EQ(state->format, "vhd");
  EXPECT_EQ(Lab::open(lab.child)->info().format, "vhd");
  EXPECT_TRUE(child_is_fresh(lab.child, lab.base));
  EXPECT_TRUE(Lab::disk(lab.child) == v2);
  auto again = lab.run();
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_TRUE(again->merged.empty());
  EXPECT_TRUE(read_all(lab.base) == bytes);
}

// A VHDX delta is not merged into a VHD base (nor the reverse).
TEST(VhdBootJob, RefusesADeltaOfTheOtherFormat) {
  Lab lab(ImageFormat::Vhd);
  Lab vhdx;
  fs::copy_file(vhdx.delta, lab.delta, fs::copy_options::overwrite_existing);
  const std::string before = read_all(lab.base);
  EXPECT_FALSE(merge_delta_into_base(lab.delta, lab.base, lab.console).ok());
  EXPECT_TRUE(read_all(lab.base) == before);
}

// A delta that changes nothing still makes the base that version.
TEST(VhdBootJob, AnEmptyDeltaGivesTheBaseItsId) {
  Lab lab;
  Lab::write_image(lab.delta, lab.spec(Lab::record_of(lab.teacher_base, "base.vhdx")), {});
  const std::vector<std::byte> v1 = Lab::disk(lab.base);
  auto outcome = lab.run();
  ASSERT_TRUE(outcome.ok()) << outcome.error().message;
  EXPECT_EQ(Lab::open(lab.base)->link_id(), Lab::open(lab.delta)->link_id());
  EXPECT_TRUE(Lab::disk(lab.base) == v1);
}

}  // namespace
}  // namespace troy::cli
