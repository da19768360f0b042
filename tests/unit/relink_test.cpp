// Naming a parent (issue 25): what a child records (recorded_link) against
// what the writers and set_parent really write, the locator comparison troy
// relink decides by, and the chain search that finds two same-id files.
#include <stdlib.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "chain.h"
#include "image.h"
#include "updater.h"
#include "writer.h"

namespace troy::relink_test {
namespace {

namespace fs = std::filesystem;
constexpr uint64_t MiB = 1 << 20;

class TempFolder {
 public:
  TempFolder() {
    std::string pattern = (fs::temp_directory_path() / "troy-relink.XXXXXX").string();
    if (::mkdtemp(pattern.data()) != nullptr) path_ = pattern;
  }
  ~TempFolder() {
    std::error_code ignored;
    if (!path_.empty()) fs::remove_all(path_, ignored);
  }
  std::string operator/(const std::string& name) const { return (fs::path(path_) / name).string(); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

ImageSpec spec_of(ImageFormat format, const std::optional<ParentRecord>& parent) {
  ImageSpec spec;
  spec.format = format;
  spec.type = parent ? ImageType::Differencing : ImageType::Dynamic;
  spec.virtual_size = 4 * MiB;
  spec.parent = parent;
  return spec;
}

// A new empty image as bytes.
std::vector<std::byte> image_bytes(const ImageSpec& spec) {
  MemorySink sink("new image");
  auto writer = create_image(spec, sink);
  EXPECT_TRUE(writer.ok()) << (writer.ok() ? "" : writer.error().message);
  if (!writer.ok()) return {};
  EXPECT_TRUE((*writer)->finish().ok());
  return std::move(sink.bytes());
}

void write_file(const std::string& path, const std::vector<std::byte>& bytes) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

std::unique_ptr<Layer> open_file(const std::string& path) {
  Diagnostics diagnostics;
  diagnostics.collect_problems = true;
  OpenOptions options;
  options.diagnostics = &diagnostics;
  auto layer = open_layer(path, options);
  EXPECT_TRUE(layer.ok()) << (layer.ok() ? "" : layer.error().message);
  EXPECT_TRUE(diagnostics.problems.empty()) << diagnostics.problems.front();
  return layer.ok() ? std::move(*layer) : nullptr;
}

ParentRecord record(const Guid& id, const std::string& relative, const std::string& absolute) {
  return ParentRecord{id, relative, absolute, 1700000000};
}

class ByFormat : public ::testing::TestWithParam<ImageFormat> {};

// recorded_link is what relink compares with: it must be exactly what a
// child written with the record reads back as, or relink would rewrite every
// time (or, worse, never).
TEST_P(ByFormat, RecordedLinkIsWhatTheWriterWrites) {
  TempFolder folder;
  const ParentRecord parent = record(Guid{1, 2, 3}, "../images/master.vhdx", "/lab/images/master.vhdx");
  write_file(folder / "child", image_bytes(spec_of(GetParam(), parent)));
  auto child = open_file(folder / "child");
  ASSERT_TRUE(child);
  const ParentLink wanted = recorded_link(GetParam(), parent);
  EXPECT_EQ(child->parent_link()->expected_id, wanted.expected_id);
  EXPECT_TRUE(locator_changes(*child->parent_link(), wanted).empty());
}

// set_parent rewrites every locator and the name, not only the id: the child
// then reads as recorded_link of the new record, with nothing of the old.
TEST_P(ByFormat, SetParentRewritesEveryLocator) {
  TempFolder folder;
  const Guid id{7, 7, 7};
  const ParentRecord old_parent = record(id, "../images/master.vhdx", "/lab/images/master.vhdx");
  const ParentRecord new_parent = record(id, "base.vhdx", "/lab/VHD/base.vhdx");
  write_file(folder / "child", image_bytes(spec_of(GetParam(), old_parent)));
  {
    auto updater = open_for_update(folder / "child");
    ASSERT_TRUE(updater.ok()) << updater.error().message;
    ASSERT_TRUE((*updater)->set_parent(new_parent).ok());
    ASSERT_TRUE((*updater)->close().ok());
  }
  auto child = open_file(folder / "child");
  ASSERT_TRUE(child);
  EXPECT_TRUE(locator_changes(*child->parent_link(), recorded_link(GetParam(), new_parent)).empty());
  const std::vector<LocatorChange> from_old = locator_changes(*child->parent_link(), recorded_link(GetParam(), old_parent));
  EXPECT_EQ(from_old.size(), GetParam() == ImageFormat::Vhd ? 3u : 2u);  // both paths, and the VHD name
  for (const ParentLocator& locator : child->parent_link()->locators)
    EXPECT_EQ(locator.path.find("master"), std::string::npos) << locator.kind << " " << locator.path;
}

INSTANTIATE_TEST_SUITE_P(Relink, ByFormat, ::testing::Values(ImageFormat::Vhd, ImageFormat::Vhdx),
                         [](const auto& test) { return test.param == ImageFormat::Vhd ? "Vhd" : "Vhdx"; });

TEST(LocatorChanges, NothingWhenTheSameLocatorsInAnotherOrder) {
  ParentLink held, wanted;
  held.locators = {{"absolute_win32_path", "\\lab\\base.vhdx", false}, {"relative_path", ".\\base.vhdx", true}};
  wanted.locators = {{"relative_path", ".\\base.vhdx", true}, {"absolute_win32_path", "\\lab\\base.vhdx", false}};
  EXPECT_TRUE(locator_changes(held, wanted).empty());
}

// The ids are relink's own question; the time stamp names no file.
TEST(LocatorChanges, IdsAndTimeStampsAreNotLocators) {
  ParentLink held, wanted;
  held.expected_id = Guid{1};
  held.parent_time = "2020-01-01";
  EXPECT_TRUE(locator_changes(held, wanted).empty());
}

TEST(LocatorChanges, ChangedMissingAndExtraLocatorsAndTheName) {
  ParentLink held, wanted;
  held.locators = {{"W2ru", "..\\images\\master.vhd", true}, {"MacX", "/Volumes/lab/master.vhd", false}};
  held.parent_name = "master.vhd";
  wanted.locators = {{"W2ru", ".\\base.vhd", true}, {"W2ku", "\\lab\\base.vhd", false}};
  wanted.parent_name = "base.vhd";
  const std::vector<LocatorChange> changes = locator_changes(held, wanted);
  ASSERT_EQ(changes.size(), 4u);
  EXPECT_EQ(changes[0].field, "W2ru");
  EXPECT_EQ(changes[0].was, "..\\images\\master.vhd");
  EXPECT_EQ(changes[0].becomes, ".\\base.vhd");
  EXPECT_EQ(changes[1].field, "W2ku");  // missing: added
  EXPECT_EQ(changes[1].was, "");
  EXPECT_EQ(changes[2].field, "MacX");  // not written by troy: removed
  EXPECT_EQ(changes[2].becomes, "");
  EXPECT_EQ(changes[3].field, "Parent Unicode Name");
  EXPECT_EQ(changes[3].was, "master.vhd");
}

// A Hyper-V child's volume_path names the old file on the old machine; the
// record has none to write, so it goes.
TEST(LocatorChanges, AVolumePathIsRemoved) {
  const ParentRecord parent = record(Guid{}, "base.vhdx", "/lab/base.vhdx");
  ParentLink held = recorded_link(ImageFormat::Vhdx, parent);
  held.locators.push_back({"volume_path", "\\\\?\\Volume{26a21bda-a627-11d7-9931-806e6f6e6963}\\base.vhdx", false});
  const std::vector<LocatorChange> changes = locator_changes(held, recorded_link(ImageFormat::Vhdx, parent));
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].field, "volume_path");
  EXPECT_EQ(changes[0].becomes, "");
}

TEST(LocatorChanges, AKindHeldTwiceComparesAllItsValues) {
  ParentLink held, wanted;
  held.locators = {{"W2ku", "\\a\\base.vhd", false}, {"W2ku", "\\b\\base.vhd", false}};
  wanted.locators = {{"W2ku", "\\a\\base.vhd", false}};
  const std::vector<LocatorChange> changes = locator_changes(held, wanted);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].was, "\\a\\base.vhd and \\b\\base.vhd");
}

TEST(HowFound, NamesTheLocatorOrTheOption) {
  Link link;
  link.found_by = "relative_path locator";
  EXPECT_EQ(how_found(link), "found by its relative_path locator");
  link.found_by = "--parent";
  EXPECT_EQ(how_found(link), "given by --parent");
}

// A parent and a copy of it: the child (made beside `made_in`'s base) is in
// `child_in`, which holds the other copy.
class SameId : public ::testing::TestWithParam<ImageFormat> {
 protected:
  void SetUp() override {
    base_ = image_bytes(spec_of(GetParam(), std::nullopt));
    Diagnostics diagnostics;
    OpenOptions options;
    options.diagnostics = &diagnostics;
    auto base = open_layer(std::make_unique<MemorySource>("base", base_), options);
    ASSERT_TRUE(base.ok());
    id_ = (*base)->link_id();
  }
  std::string name() const { return GetParam() == ImageFormat::Vhd ? "base.vhd" : "base.vhdx"; }
  // A child in folder A whose relative locator names A's base and whose
  // absolute one names `absolute`.
  std::string child_in_a(const std::string& absolute) {
    const std::string child = folder_ / "A/child";
    write_file(child, image_bytes(spec_of(GetParam(), record(id_, name(), absolute))));
    return child;
  }
  Result<Chain> open(const std::string& child, ChainOptions options = {}) {
    options.open.diagnostics = &diagnostics_;
    return open_chain(child, options);
  }

  TempFolder folder_;
  std::vector<std::byte> base_;
  Guid id_{};
  Diagnostics diagnostics_;
};

TEST_P(SameId, TwoFilesWithTheParentsIdAreReported) {
  write_file(folder_ / ("A/" + name()), base_);
  write_file(folder_ / ("B/" + name()), base_);
  auto chain = open(child_in_a(folder_ / ("B/" + name())));
  ASSERT_TRUE(chain.ok()) << chain.error().message;
  const Link& link = chain->links().at(0);
  EXPECT_EQ(link.path, fs::canonical(folder_ / ("A/" + name())).string());
  ASSERT_EQ(link.same_id_elsewhere.size(), 1u);
  EXPECT_EQ(link.same_id_elsewhere[0], fs::canonical(folder_ / ("B/" + name())).string());
  ASSERT_EQ(diagnostics_.warnings.size(), 1u);
  EXPECT_NE(diagnostics_.warnings[0].find("troy relink"), std::string::npos) << diagnostics_.warnings[0];
}

TEST_P(SameId, MergeAsksForNoWarning) {
  write_file(folder_ / ("A/" + name()), base_);
  write_file(folder_ / ("B/" + name()), base_);
  ChainOptions options;
  options.warn_same_id = false;
  auto chain = open(child_in_a(folder_ / ("B/" + name())), options);
  ASSERT_TRUE(chain.ok()) << chain.error().message;
  EXPECT_EQ(chain->links().at(0).same_id_elsewhere.size(), 1u);
  EXPECT_TRUE(diagnostics_.warnings.empty());
}

TEST_P(SameId, TheParentGivenWithParentIsNotAGuess) {
  write_file(folder_ / ("A/" + name()), base_);
  write_file(folder_ / ("B/" + name()), base_);
  ChainOptions options;
  options.parents = {folder_ / ("B/" + name())};
  auto chain = open(child_in_a(folder_ / ("B/" + name())), options);
  ASSERT_TRUE(chain.ok()) << chain.error().message;
  EXPECT_EQ(chain->links().at(0).path, fs::canonical(folder_ / ("B/" + name())).string());
  EXPECT_TRUE(chain->links().at(0).same_id_elsewhere.empty());
}

// One file under two names (a hard link) is one parent.
TEST_P(SameId, AHardLinkIsTheSameFile) {
  write_file(folder_ / ("A/" + name()), base_);
  fs::create_directories(folder_.path() / "B");
  fs::create_hard_link(folder_ / ("A/" + name()), folder_ / ("B/" + name()));
  auto chain = open(child_in_a(folder_ / ("B/" + name())));
  ASSERT_TRUE(chain.ok()) << chain.error().message;
  EXPECT_TRUE(chain->links().at(0).same_id_elsewhere.empty());
  EXPECT_TRUE(diagnostics_.warnings.empty());
}

// Another image (another id), or no file, where the absolute path leads.
TEST_P(SameId, AnotherImageOrNothingElsewhereIsNoAmbiguity) {
  write_file(folder_ / ("A/" + name()), base_);
  write_file(folder_ / ("B/" + name()), image_bytes(spec_of(GetParam(), std::nullopt)));
  auto chain = open(child_in_a(folder_ / ("B/" + name())));
  ASSERT_TRUE(chain.ok()) << chain.error().message;
  EXPECT_TRUE(chain->links().at(0).same_id_elsewhere.empty());
  auto alone = open(child_in_a(folder_ / ("C/" + name())));
  ASSERT_TRUE(alone.ok()) << alone.error().message;
  EXPECT_TRUE(alone->links().at(0).same_id_elsewhere.empty());
}

INSTANTIATE_TEST_SUITE_P(Chain, SameId, ::testing::Values(ImageFormat::Vhd, ImageFormat::Vhdx),
                         [](const auto& test) { return test.param == ImageFormat::Vhd ? "Vhd" : "Vhdx"; });

}  // namespace
}  // namespace troy::relink_test
