// The machine's own state beyond the image (tools/lab/machine_state.h): the
// record round trips and refuses damage, writes alternate between the two
// slots so a write cut short leaves the previous state, the area must lie
// on the disk, and a partition reaching into it forbids writing there.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "machine_state.h"

namespace troy::cli {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kImage = 4 << 20;

class MachineStateFile : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "troy-state.XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    root_ = pattern;
    disk_ = (root_ / "disk").string();
    std::ofstream(disk_).close();
    fs::resize_file(disk_, kImage + kStateAreaBytes);
  }
  void TearDown() override { fs::remove_all(root_); }

  void write_bytes(uint64_t offset, const std::string& bytes) {
    std::fstream file(disk_, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(static_cast<std::streamoff>(offset));
    file.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }

  fs::path root_;
  std::string disk_;
};

MachineState sample() {
  MachineState state;
  for (size_t i = 0; i < state.key.size(); ++i) state.key[i] = static_cast<uint8_t>(i * 7 + 1);
  state.key_sent = true;
  state.highest_serial = 42;
  state.report_counter = 9;
  state.sequence = 3;
  return state;
}

TEST(MachineState, RecordRoundTrips) {
  const std::string record = encode_state_record(sample());
  ASSERT_EQ(record.size(), kStateRecordBytes);
  const auto decoded = decode_state_record(std::as_bytes(std::span(record)));
  ASSERT_TRUE(decoded);
  EXPECT_EQ(decoded->key, sample().key);
  EXPECT_TRUE(decoded->key_sent);
  EXPECT_EQ(decoded->highest_serial, 42u);
  EXPECT_EQ(decoded->report_counter, 9u);
  EXPECT_EQ(decoded->sequence, 3u);
}

TEST(MachineState, RefusesAnyChangedByteAndZeros) {
  const std::string good = encode_state_record(sample());
  for (size_t at : {0ul, 8ul, 20ul, 60ul, 70ul, 2000ul, 4095ul}) {
    std::string bad = good;
    bad[at] = static_cast<char>(bad[at] ^ 0x01);
    EXPECT_FALSE(decode_state_record(std::as_bytes(std::span(bad)))) << "byte " << at;
  }
  const std::string zeros(kStateRecordBytes, '\0');
  EXPECT_FALSE(decode_state_record(std::as_bytes(std::span(zeros))));
}

TEST(MachineState, NewStatesHaveDifferentRandomKeys) {
  auto a = new_machine_state();
  auto b = new_machine_state();
  ASSERT_TRUE(a && b);
  EXPECT_NE(a->key, b->key);
  EXPECT_EQ(key_hex(*a).size(), 64u);
}

TEST(MachineState, FitsOnlyWithAWholeMebibyteBeyondTheImage) {
  std::string why;
  EXPECT_TRUE(state_fits(kImage + kStateAreaBytes, kImage, why));
  EXPECT_FALSE(state_fits(kImage + kStateAreaBytes - 1, kImage, why));
  EXPECT_NE(why.find("cannot be kept"), std::string::npos) << why;
  EXPECT_FALSE(state_fits(kImage - 1, kImage, why));
}

TEST_F(MachineStateFile, ADiskNeverUsedHasNoState) {
  auto state = read_machine_state(disk_, kImage);
  ASSERT_TRUE(state) << state.error().message;
  EXPECT_FALSE(*state);
}

TEST_F(MachineStateFile, WritesAlternateSlotsAndTheNewestWins) {
  MachineState state = sample();
  state.sequence = 0;
  ASSERT_TRUE(write_machine_state(disk_, kImage, state));
  EXPECT_EQ(state.sequence, 1u);
  state.highest_serial = 43;
  ASSERT_TRUE(write_machine_state(disk_, kImage, state));
  EXPECT_EQ(state.sequence, 2u);
  auto read = read_machine_state(disk_, kImage);
  ASSERT_TRUE(read && *read);
  EXPECT_EQ((*read)->highest_serial, 43u);
  EXPECT_EQ((*read)->sequence, 2u);
  // Nothing was written inside the image.
  std::ifstream file(disk_, std::ios::binary);
  std::string image(kImage, 'x');
  file.read(image.data(), static_cast<std::streamsize>(image.size()));
  EXPECT_EQ(image.find_first_not_of('\0'), std::string::npos);
}

TEST_F(MachineStateFile, AWriteCutShortLeavesThePreviousState) {
  MachineState state = sample();
  ASSERT_TRUE(write_machine_state(disk_, kImage, state));  // slot 0, serial 42
  state.highest_serial = 50;
  ASSERT_TRUE(write_machine_state(disk_, kImage, state));  // slot 1, serial 50
  // A power cut while slot 1 is rewritten: half of it is garbage.
  write_bytes(kImage + kStateSlotSpacing + 100, std::string(2000, 'Z'));
  auto read = read_machine_state(disk_, kImage);
  ASSERT_TRUE(read && *read);
  EXPECT_EQ((*read)->highest_serial, 42u);
  // The next write goes to the broken slot, not over the good one.
  state.highest_serial = 51;
  ASSERT_TRUE(write_machine_state(disk_, kImage, state));
  write_bytes(kImage + 10, std::string(10, 'Z'));  // now slot 0 breaks
  read = read_machine_state(disk_, kImage);
  ASSERT_TRUE(read && *read);
  EXPECT_EQ((*read)->highest_serial, 51u);
}

TEST_F(MachineStateFile, RefusesADiskWithoutRoom) {
  fs::resize_file(disk_, kImage + kStateAreaBytes - 512);
  auto read = read_machine_state(disk_, kImage);
  ASSERT_FALSE(read);
  EXPECT_NE(read.error().message.find("cannot be kept"), std::string::npos) << read.error().message;
  MachineState state = sample();
  EXPECT_FALSE(write_machine_state(disk_, kImage, state));
  EXPECT_EQ(fs::file_size(disk_), kImage + kStateAreaBytes - 512);  // not extended
}

// An MBR whose one partition runs to the disk's end, past the image.
std::string mbr_with_partition(uint32_t first_sector, uint32_t sectors) {
  std::string sector(512, '\0');
  const size_t entry = 446;
  sector[entry + 4] = 0x07;  // NTFS
  for (int i = 0; i < 4; ++i) {
    sector[entry + 8 + i] = static_cast<char>((first_sector >> (8 * i)) & 0xff);
    sector[entry + 12 + i] = static_cast<char>((sectors >> (8 * i)) & 0xff);
  }
  sector[510] = 0x55;
  sector[511] = static_cast<char>(0xaa);
  return sector;
}

TEST_F(MachineStateFile, APartitionReachingPastTheImageForbidsTheArea) {
  write_bytes(0, mbr_with_partition(2048, static_cast<uint32_t>(kImage / 512 - 2048)));
  EXPECT_TRUE(check_state_area_free(disk_, kImage));
  write_bytes(0, mbr_with_partition(2048, static_cast<uint32_t>((kImage + kStateAreaBytes) / 512 - 2048)));
  auto free = check_state_area_free(disk_, kImage);
  ASSERT_FALSE(free);
  EXPECT_NE(free.error().message.find("may belong to a partition"), std::string::npos) << free.error().message;
}

}  // namespace
}  // namespace troy::cli
