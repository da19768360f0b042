// The lab's hosts file (tools/lab/hosts.h): MAC SEAT [NOTE] lines, every MAC
// spelling, comments, and one error line naming file:line for each way a
// line is wrong (hostile or careless).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "hosts.h"

namespace troy::cli {
namespace {

TEST(Hosts, ParsesSeatsNotesCommentsAndEveryMacSpelling) {
  const auto hosts = parse_hosts(
      "# room 12\n"
      "\n"
      "52:54:00:AB:CD:01  R12-01  teacher's desk \r\n"
      "   # indented comment\n"
      "52-54-00-ab-cd-02\tR12-02\n"
      "52:54:00:aB:Cd:03 Räum-3\n",
      "hosts");
  ASSERT_TRUE(hosts) << hosts.error().message;
  ASSERT_EQ(hosts->entries.size(), 3u);
  EXPECT_EQ(hosts->entries[0].machine, "52-54-00-ab-cd-01");
  EXPECT_EQ(hosts->entries[0].seat, "R12-01");
  EXPECT_EQ(hosts->entries[0].note, "teacher's desk");
  EXPECT_EQ(hosts->entries[0].line, 3u);
  EXPECT_EQ(hosts->entries[1].note, "");
  EXPECT_EQ(hosts->entries[1].line, 5u);
  EXPECT_EQ(hosts->seat_of("52:54:00:AB:CD:02"), "R12-02");
  EXPECT_EQ(hosts->seat_of("52-54-00-ab-cd-03"), "Räum-3");
  EXPECT_EQ(hosts->seat_of("52-54-00-ab-cd-04"), "");
  EXPECT_EQ(hosts->find("not a mac"), nullptr);
}

TEST(Hosts, EmptyTextIsNoMachines) {
  const auto hosts = parse_hosts("", "hosts");
  ASSERT_TRUE(hosts);
  EXPECT_TRUE(hosts->entries.empty());
}

void expect_refused(const std::string& text, const std::string& expected) {
  const auto hosts = parse_hosts(text, "/etc/troy/hosts");
  ASSERT_FALSE(hosts) << text;
  EXPECT_EQ(hosts.error().message, expected);
  EXPECT_EQ(hosts.error().message.find('\n'), std::string::npos);
}

TEST(Hosts, EachBadLineIsOneErrorNamingFileLineAndField) {
  expect_refused("# ok\n52:54:00:00:00:1 R1\n",
                 "/etc/troy/hosts:2: MAC: '52:54:00:00:00:1' is not a MAC address (six pairs of hex digits "
                 "separated by ':' or '-')");
  expect_refused("52:54:00:00:00:0g R1\n",
                 "/etc/troy/hosts:1: MAC: '52:54:00:00:00:0g' is not a MAC address (six pairs of hex digits "
                 "separated by ':' or '-')");
  expect_refused("52:54:00:00:00:01\n", "/etc/troy/hosts:1: SEAT: missing (a line is MAC SEAT [NOTE])");
  expect_refused("52:54:00:00:00:01 R1\n52-54-00-00-00-01 R2\n",
                 "/etc/troy/hosts:2: MAC: 52-54-00-00-00-01 is already listed on line 1");
  expect_refused("52:54:00:00:00:01 R1\n52:54:00:00:00:02 R1 spare\n",
                 "/etc/troy/hosts:2: SEAT: 'R1' is already listed on line 1");
  expect_refused("52:54:00:00:00:01 R1\x1b[2J\n",
                 "/etc/troy/hosts:1: a control character (0x1b); a line is MAC SEAT [NOTE]");
  expect_refused("52:54:00:00:00:01 " + std::string(65, 's') + "\n", "/etc/troy/hosts:1: SEAT: 65 bytes, more than 64");
  expect_refused("52:54:00:00:00:01 R1 " + std::string(257, 'n') + "\n",
                 "/etc/troy/hosts:1: NOTE: 257 bytes, more than 256");
  // A MAC longer than the message quotes is cut, never echoed whole.
  const auto long_mac = parse_hosts(std::string(5000, 'x') + " R1\n", "h");
  ASSERT_FALSE(long_mac);
  EXPECT_LT(long_mac.error().message.size(), 200u);
}

TEST(Hosts, ReadsAFileAndAMissingDefaultIsNoMachines) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / "troy_hosts_test";
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "hosts").string();
  std::ofstream(path) << "52:54:00:00:00:01 R1\n";
  const auto hosts = read_hosts(path, false);
  ASSERT_TRUE(hosts) << hosts.error().message;
  EXPECT_EQ(hosts->path, path);
  EXPECT_EQ(hosts->seat_of("52:54:00:00:00:01"), "R1");
  const auto missing = read_hosts((dir / "absent").string(), true);
  ASSERT_TRUE(missing);
  EXPECT_TRUE(missing->entries.empty());
  EXPECT_FALSE(read_hosts((dir / "absent").string(), false));
  EXPECT_FALSE(read_hosts(dir.string(), true));  // a directory
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace troy::cli
