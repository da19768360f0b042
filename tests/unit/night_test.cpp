// The nightly rollout's decisions (tools/lab/night.h): whom to wake, waves
// and retries, each machine's verdict, the magic packet, and the boot
// decision during a night (a machine at the newest version still boots the
// payload, with troy.then=poweroff; a stranger's request writes nothing).
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "night.h"
#include "server.h"

namespace troy::cli {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kStart = 1788249600;  // 2026-09-01T08:00:00Z

KnownMachine known(const std::string& machine, std::optional<std::string> holds = std::nullopt, bool reimage = false) {
  return KnownMachine{machine, "", std::move(holds), reimage};
}

std::vector<NightMachine> night_of(size_t count) {
  std::vector<NightMachine> machines(count);
  for (size_t at = 0; at < count; ++at) machines[at].known.machine = fmt::format("52-54-00-00-00-{:02x}", at);
  return machines;
}

TEST(Night, ParsesDurations) {
  EXPECT_EQ(parse_duration("90"), 90);
  EXPECT_EQ(parse_duration("90s"), 90);
  EXPECT_EQ(parse_duration("15m"), 900);
  EXPECT_EQ(parse_duration("3h"), 10800);
  for (const char* bad : {"", "h", "-5m", "3d", "1.5h", "3h ", "999999h"}) EXPECT_FALSE(parse_duration(bad)) << bad;
}

TEST(Night, WakesEveryoneButMachinesAtTheNewestVersion) {
  const NightSettings settings;
  const auto choice = choose_machines({known("52-54-00-00-00-03", "v3"), known("52-54-00-00-00-01", "v2"),
                                       known("52-54-00-00-00-02"), known("52-54-00-00-00-04", "v3", true)},
                                      "v3", settings);
  ASSERT_EQ(choice.wake.size(), 3u);
  EXPECT_EQ(choice.wake[0].machine, "52-54-00-00-00-01");  // sorted
  EXPECT_EQ(choice.wake[1].machine, "52-54-00-00-00-02");  // never reported
  EXPECT_EQ(choice.wake[2].machine, "52-54-00-00-00-04");  // at v3, but its reimage flag is set
  ASSERT_EQ(choice.current.size(), 1u);
  EXPECT_EQ(choice.current[0].machine, "52-54-00-00-00-03");

  NightSettings all;
  all.wake_current = true;
  EXPECT_EQ(choose_machines({known("52-54-00-00-00-03", "v3")}, "v3", all).wake.size(), 1u);
}

TEST(Night, WavesAreNoLargerThanTheWaveSizeAndNewMachinesComeFirst) {
  NightSettings settings;
  settings.wave_size = 20;
  auto machines = night_of(45);
  std::vector<size_t> sizes;
  for (auto wave = next_wave(machines, settings, kStart); !wave.empty(); wave = next_wave(machines, settings, kStart)) {
    sizes.push_back(wave.size());
    for (const size_t at : wave) {
      EXPECT_EQ(machines[at].wakes, 0);
      ++machines[at].wakes;
      machines[at].last_wake = kStart;
    }
  }
  EXPECT_EQ(sizes, (std::vector<size_t>{20, 20, 5}));
}

TEST(Night, WakesASilentMachineAgainAfterRetryAfterWhileRetriesLast) {
  NightSettings settings;
  settings.retry_after = 300;
  settings.retries = 2;
  auto machines = night_of(3);
  for (auto& machine : machines) machine.wakes = 1, machine.last_wake = kStart;
  machines[1].booted = kStart + 60;  // woke: never woken again
  machines[2].result = "ok";         // reported
  EXPECT_TRUE(next_wave(machines, settings, kStart + 299).empty());
  EXPECT_EQ(next_wave(machines, settings, kStart + 300), std::vector<size_t>{0});
  machines[0].wakes = 3;  // the first wake-up and two retries
  EXPECT_TRUE(next_wave(machines, settings, kStart + 10000).empty());
}

TEST(Night, VerdictPerMachine) {
  NightSettings settings;
  settings.retry_after = 300;
  settings.retries = 1;
  NightMachine machine;
  machine.wakes = 1;
  machine.last_wake = kStart;
  EXPECT_EQ(night_verdict(machine, "v3", settings, kStart + 1000, false), Verdict::pending);  // a retry is left
  EXPECT_EQ(night_verdict(machine, "v3", settings, kStart + 1000, true), Verdict::did_not_wake);
  machine.wakes = 2;
  EXPECT_EQ(night_verdict(machine, "v3", settings, kStart + 299, false), Verdict::pending);
  EXPECT_EQ(night_verdict(machine, "v3", settings, kStart + 300, false), Verdict::did_not_wake);
  machine.booted = kStart + 100;
  EXPECT_EQ(night_verdict(machine, "v3", settings, kStart + 1000, false), Verdict::pending);
  EXPECT_EQ(night_verdict(machine, "v3", settings, kStart + 1000, true), Verdict::no_report);
  machine.result = "ok";
  machine.version = "v3";
  EXPECT_EQ(night_verdict(machine, "v3", settings, kStart + 1000, false), Verdict::updated);
  machine.version = "v2";  // ok, but not at the newest version
  EXPECT_EQ(night_verdict(machine, "v3", settings, kStart + 1000, false), Verdict::failed);
  machine.result = "error";
  EXPECT_EQ(night_verdict(machine, "v3", settings, kStart + 1000, false), Verdict::failed);
  EXPECT_EQ(verdict_name(Verdict::did_not_wake), "did not wake");
}

TEST(Night, SettledWhenNoMachineIsPending) {
  NightSettings settings;
  settings.retries = 0;
  settings.retry_after = 60;
  auto machines = night_of(2);
  for (auto& machine : machines) machine.wakes = 1, machine.last_wake = kStart;
  machines[0].result = "ok";
  machines[0].version = "v3";
  EXPECT_FALSE(night_settled(machines, "v3", settings, kStart + 59));
  EXPECT_TRUE(night_settled(machines, "v3", settings, kStart + 60));
  machines[1].booted = kStart + 30;  // it woke: the night waits for its report
  EXPECT_FALSE(night_settled(machines, "v3", settings, kStart + 600));
}

TEST(Night, MagicPacketIsSixFFThenTheMacSixteenTimes) {
  const auto packet = magic_packet("52:54:00:AB:cd:0f");
  ASSERT_TRUE(packet);
  for (size_t at = 0; at < 6; ++at) EXPECT_EQ((*packet)[at], 0xff);
  const uint8_t mac[] = {0x52, 0x54, 0x00, 0xab, 0xcd, 0x0f};
  for (size_t copy = 0; copy < 16; ++copy)
    for (size_t at = 0; at < 6; ++at) EXPECT_EQ((*packet)[6 + copy * 6 + at], mac[at]) << copy;
  EXPECT_FALSE(magic_packet("52:54:00:ab:cd"));
  EXPECT_FALSE(send_magic_packet("52:54:00:ab:cd:0f", "not-an-address", 9));
}

TEST(Night, ArgumentsEndWithPoweroff) {
  EXPECT_EQ(night_arguments("console=tty0 troy.then=reboot quiet"), "console=tty0 quiet troy.then=poweroff");
  EXPECT_EQ(night_arguments(""), "troy.then=poweroff");
  EXPECT_EQ(night_arguments("troy.then=poweroff"), "troy.then=poweroff");
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void write_text(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

class NightServer : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "troy-night.XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    served_ = pattern;
    write_text(served_ / "boot/cmdline", "console=ttyS0 troy.then=reboot\n");
    write_text(served_ / "manifest", "troy-manifest 1\ndisk-size 1048576\nversion v3 base 0123abcd\n");
    // 52-54-00-00-00-01 reported v3 before the night: its usual boot is its local disk.
    write_text(served_ / "reports/52-54-00-00-00-01.boot",
               fmt::format("{{\"result\":\"ok\",\"version\":\"v3\",\"time\":{}}}\n", kStart - 86400));
  }
  void TearDown() override { fs::remove_all(served_); }

  std::string boot(const std::string& mac, int64_t at) {
    CgiRequest request;
    request.method = "GET";
    request.query = "mac=" + mac;
    request.host = "10.0.0.1:8080";
    return handle_boot(served_.string(), request, std::chrono::system_clock::from_time_t(at)).body;
  }

  fs::path served_;
};

TEST_F(NightServer, DuringTheNightAListedMachineBootsThePayloadAndPowersOff) {
  EXPECT_NE(boot("52-54-00-00-00-01", kStart).find("sanboot"), std::string::npos);
  ASSERT_TRUE(write_night_plan(served_.string(), NightPlan{kStart, kStart + 3600, {"52-54-00-00-00-01"}}));
  const std::string night = boot("52:54:00:00:00:01", kStart + 10);
  EXPECT_NE(night.find("console=ttyS0 troy.then=poweroff ||"), std::string::npos) << night;
  EXPECT_EQ(night.find("troy.then=reboot"), std::string::npos) << night;
  EXPECT_EQ(read_text(served_ / "reports/night/52-54-00-00-00-01"), fmt::format("{}\n", kStart + 10));
  // Another machine's request: the usual script, and no file named after it.
  EXPECT_NE(boot("52-54-00-00-00-02", kStart + 10).find("troy.then=reboot"), std::string::npos);
  EXPECT_FALSE(fs::exists(served_ / "reports/night/52-54-00-00-00-02"));
  // Past the deadline (a night killed with -9): the usual decision again.
  EXPECT_NE(boot("52-54-00-00-00-01", kStart + 3600).find("sanboot"), std::string::npos);
  ASSERT_TRUE(remove_night_plan(served_.string()));
  EXPECT_NE(boot("52-54-00-00-00-01", kStart + 20).find("sanboot"), std::string::npos);
}

TEST_F(NightServer, ObservesBootRequestsAndReportsSinceTheStart) {
  write_text(served_ / "reports/night/52-54-00-00-00-02", fmt::format("{}\n", kStart - 5));  // an earlier night's
  write_text(served_ / "reports/night/52-54-00-00-00-03", fmt::format("{}\n", kStart + 50));
  write_text(served_ / "reports/52-54-00-00-00-03.boot",
             fmt::format("{{\"result\":\"error\",\"version\":\"v2\",\"time\":{}}}\n", kStart + 90));
  write_text(served_ / "reports/52-54-00-00-00-03.json", "{\"message\":\"sha256 of v3 differs\"}\n");
  write_text(served_ / "reports/52-54-00-00-00-02.boot",
             fmt::format("{{\"result\":\"progress\",\"version\":\"v2\",\"time\":{}}}\n", kStart + 70));
  auto machines = night_of(4);
  observe_night(served_.string(), kStart, machines);
  EXPECT_FALSE(machines[2].result);  // at work: alive, no outcome yet
  EXPECT_EQ(machines[2].booted, kStart + 70);
  EXPECT_FALSE(machines[1].result);  // reported the day before
  EXPECT_EQ(machines[3].booted, kStart + 50);
  EXPECT_EQ(machines[3].result, "error");
  EXPECT_EQ(machines[3].message, "sha256 of v3 differs");
  EXPECT_EQ(held_versions(served_.string()).at("52-54-00-00-00-01"), "v3");
  EXPECT_EQ(held_versions(served_.string()).at("52-54-00-00-00-02"), "");  // at work: holds no version yet
  EXPECT_EQ(served_newest_version(served_.string()), "v3");
}

TEST_F(NightServer, ReportNamesEachVerdictAndIsReadBack) {
  NightOutcome outcome;
  outcome.started = kStart;
  outcome.ended = kStart + 600;
  outcome.newest = "v3";
  outcome.machines = night_of(3);
  for (auto& machine : outcome.machines) machine.wakes = 3, machine.last_wake = kStart;
  outcome.machines[0].result = "ok";
  outcome.machines[0].version = "v3";
  outcome.machines[0].known.seat = "R12-01";
  outcome.machines[1].result = "error";
  outcome.machines[1].message = "no disk\x1b[2J matches";
  outcome.current = {known("52-54-00-00-00-09", "v3")};
  const auto path = write_night_report(served_.string(), outcome);
  ASSERT_TRUE(path) << path.error().message;
  EXPECT_EQ(*path, (served_ / "reports/nights/2026-09-01T080000Z.txt").string());
  const auto text = read_night_report(served_.string(), "");
  ASSERT_TRUE(text);
  EXPECT_NE(text->find("3 woken: 1 updated, 1 failed, 1 did not wake, 0 woke without a report; 1 already at v3"),
            std::string::npos)
      << *text;
  EXPECT_NE(text->find("52-54-00-00-00-00  R12-01      updated"), std::string::npos) << *text;
  EXPECT_NE(text->find("no disk [2J matches"), std::string::npos) << *text;  // no escape reaches the terminal
  EXPECT_NE(text->find("52-54-00-00-00-02  -           did not wake"), std::string::npos) << *text;
  EXPECT_NE(text->find("52-54-00-00-00-09  -           current"), std::string::npos) << *text;
  const auto named = read_night_report(served_.string(), "2026-09-01T080000Z");
  ASSERT_TRUE(named);
  EXPECT_EQ(*named, *text);
  EXPECT_FALSE(read_night_report(served_.string(), "2026-09-02T080000Z"));
}

}  // namespace
}  // namespace troy::cli
