// lab.conf (tools/lab/lab_config.h): values, defaults, comments, and every
// malformed line refused with FILE:LINE; the commented conffile the package
// installs (conf/lab.conf) lists exactly the parser's keys, so neither can
// drift from the other.
#include "lab_config.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

namespace troy::cli {
namespace {

Result<LabConfig> parse(std::string_view text) { return parse_lab_config(text, "/etc/troy/lab.conf"); }

TEST(LabConfig, ValuesCommentsAndDefaults) {
  auto config = parse("# the lab\n\n  served = /srv/lab  \ninterface=eth1 # classroom\r\nkernel_args = quiet troy.then=poweroff\n");
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_EQ(config->value("served"), "/srv/lab");
  EXPECT_EQ(config->value("interface"), "eth1");
  EXPECT_EQ(config->value("kernel_args"), "quiet troy.then=poweroff");
  EXPECT_EQ(config->value("http_port"), "8080");  // the default
  EXPECT_TRUE(config->is_set("served"));
  EXPECT_FALSE(config->is_set("http_port"));
  EXPECT_EQ(config->where("interface"), "/etc/troy/lab.conf:4");
  EXPECT_EQ(config->value("no_such_key"), "");
}

TEST(LabConfig, EmptyValueIsAValue) {
  auto config = parse("interface =\nserver_url=http://10.0.0.1:8080/#x\n");
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_TRUE(config->is_set("interface"));
  EXPECT_EQ(config->value("interface"), "");
  EXPECT_EQ(config->value("server_url"), "http://10.0.0.1:8080/#x");  // no space before '#': kept
}

TEST(LabConfig, RefusesWithFileAndLine) {
  struct Case {
    const char* text;
    const char* expected;
  };
  const Case cases[] = {
      {"served = /a\nserverd = /b\n", "/etc/troy/lab.conf:2: unknown key 'serverd' (did you mean 'served'?)"},
      {"\n\nfrobnicate = 1\n", "/etc/troy/lab.conf:3: unknown key 'frobnicate' (troy lab config --keys lists them)"},
      {"served = /a\n# x\nserved = /b\n", "/etc/troy/lab.conf:3: served is set twice (first on line 1)"},
      {"served /srv/troy\n", "/etc/troy/lab.conf:1: expected `key = value`, found 'served /srv/troy'"},
      {"Served = /a\n", "/etc/troy/lab.conf:1: 'Served' is not a key (lower-case letters, digits, _)"},
      {"= /a\n", "/etc/troy/lab.conf:1: '' is not a key (lower-case letters, digits, _)"},
      {"kernel_args = quiet\x1b[2J\n", "/etc/troy/lab.conf:1: kernel_args: the value has a control character"},
  };
  for (const auto& c : cases) {
    auto config = parse(c.text);
    ASSERT_FALSE(config.ok()) << c.text;
    EXPECT_EQ(config.error().message, c.expected);
  }
}

TEST(LabConfig, NumberNamesWhereTheValueCameFrom) {
  auto config = parse("\nhttp_port = 80x\n");
  ASSERT_TRUE(config.ok());
  auto port = config->number("http_port", 1, 65535);
  ASSERT_FALSE(port.ok());
  EXPECT_EQ(port.error().message, "/etc/troy/lab.conf:2: http_port: '80x' is not a whole number from 1 to 65535");
  EXPECT_FALSE(parse("http_port = 70000\n")->number("http_port", 1, 65535).ok());
  EXPECT_FALSE(parse("http_port = 99999999999999999999999\n")->number("http_port", 1, 65535).ok());
  EXPECT_EQ(*parse("http_port = 8081\n")->number("http_port", 1, 65535), 8081u);
  EXPECT_EQ(*parse("")->number("http_port", 1, 65535), 8080u);
}

// check_lab_config: every number key whole and in range, before a program
// (troy-lab-serve, Makefile.lab) gets it.
TEST(LabConfig, CheckRefusesNumbersOutOfRange) {
  EXPECT_TRUE(check_lab_config(*parse("")).ok());  // the defaults are valid
  EXPECT_TRUE(check_lab_config(*parse("multicast_min_receivers = 40\nmulticast_min_wait = 0\n")).ok());
  auto bad = check_lab_config(*parse("multicast_min_wait = 10s\n"));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().message, "/etc/troy/lab.conf:1: multicast_min_wait: '10s' is not a whole number from 0 to 3600");
  EXPECT_FALSE(check_lab_config(*parse("multicast_min_receivers = 0\n")).ok());
  EXPECT_FALSE(check_lab_config(*parse("multicast_receiver_wait = 99999\n")).ok());
  EXPECT_FALSE(check_lab_config(*parse("http_port = 80x\n")).ok());
  EXPECT_TRUE(check_lab_config(*parse("multicast_max_bitrate =\n")).ok());  // no cap
  auto rate = check_lab_config(*parse("multicast_max_bitrate = 1g\n"));
  ASSERT_FALSE(rate.ok());
  EXPECT_EQ(rate.error().message, "/etc/troy/lab.conf:1: multicast_max_bitrate: '1g' is not a whole number of bits per "
                                  "second, with k or m, from 1k to 2000m (e.g. 600m)");
}

TEST(LabConfig, MissingDefaultFileGivesDefaultsButAnExplicitOneIsAnError) {
  const std::string missing = ::testing::TempDir() + "/no-such-lab.conf";
  auto defaults = load_lab_config(missing, true);
  ASSERT_TRUE(defaults.ok()) << defaults.error().message;
  EXPECT_EQ(defaults->value("served"), "/srv/troy");
  EXPECT_EQ(defaults->where("served"), "the default");
  auto refused = load_lab_config(missing, false);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find(missing), std::string::npos) << refused.error().message;
}

TEST(LabConfig, ShellAndMakeOutputQuoteTheirSpecialCharacters) {
  auto config = parse("kernel_args = it's $HOME\nserver_url = http://a/ #c\n");
  ASSERT_TRUE(config.ok()) << config.error().message;
  const std::string shell = lab_config_shell(*config);
  EXPECT_NE(shell.find("KERNEL_ARGS='it'\\''s $HOME'\n"), std::string::npos) << shell;
  EXPECT_NE(shell.find("SERVED='/srv/troy'\n"), std::string::npos) << shell;
  const std::string make = lab_config_make(*parse("kernel_args = a$b\nserver_url = http://x/a#b\n"));
  EXPECT_NE(make.find("KERNEL_ARGS ?= a$$b\n"), std::string::npos) << make;
  EXPECT_NE(make.find("SERVER_URL ?= http://x/a\\#b\n"), std::string::npos) << make;
}

// conf/lab.conf, the conffile: every key of the parser appears there as a
// commented default (`#key = default`), nothing else, and it parses.
TEST(LabConfig, ConffileListsExactlyTheParsersKeys) {
  const std::filesystem::path conffile = std::filesystem::path(TROY_SOURCE_DIR) / "conf/lab.conf";
  std::ifstream in(conffile);
  ASSERT_TRUE(in) << conffile;
  std::stringstream text;
  text << in.rdbuf();
  ASSERT_TRUE(parse_lab_config(text.str(), conffile.string()).ok());
  std::set<std::string> listed;
  std::istringstream lines(text.str());
  for (std::string line; std::getline(lines, line);) {
    const size_t equals = line.find(" =");
    if (line.rfind("#", 0) != 0 || line.rfind("# ", 0) == 0 || line == "#" || equals == std::string::npos) continue;
    const std::string key = line.substr(1, equals - 1);
    listed.insert(key);
    const LabConfig defaults = *parse("");
    const size_t value_start = line.find_first_not_of(' ', equals + 2);
    EXPECT_EQ(value_start == std::string::npos ? "" : line.substr(value_start), defaults.value(key)) << "the conffile's default of " << key;
  }
  std::set<std::string> known;
  for (const auto& key : lab_config_keys()) known.insert(key.name);
  EXPECT_EQ(listed, known);
}

}  // namespace
}  // namespace troy::cli
