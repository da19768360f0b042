// The boot payload's settings from the kernel command line (lab/update.h):
// the server and a poweroff may come from it, never the disk or a shell.
#include <gtest/gtest.h>

#include "update.h"

namespace troy::cli {
namespace {

TEST(KernelSettings, ServerThenAndWaitAmongOtherWords) {
  const auto settings =
      kernel_settings("BOOT_IMAGE=vmlinuz console=ttyS0 troy.server=http://10.0.0.1:8080 troy.then=poweroff troy.wait=5 quiet\n");
  EXPECT_EQ(settings.server, "http://10.0.0.1:8080");
  EXPECT_EQ(settings.then, "poweroff");
  ASSERT_TRUE(settings.wait.has_value());
  EXPECT_EQ(*settings.wait, 5u);
  EXPECT_TRUE(settings.ignored.empty());
}

TEST(KernelSettings, NothingOfTroysGivesEmptySettings) {
  const auto settings = kernel_settings("console=tty0 quiet");
  EXPECT_TRUE(settings.server.empty());
  EXPECT_TRUE(settings.then.empty());
  EXPECT_FALSE(settings.wait.has_value());
  EXPECT_TRUE(settings.ignored.empty());
}

// A native-VHD-boot machine may keep its student's child (it writes less);
// nothing else of the child or base comes from the unsigned command line.
TEST(KernelSettings, OnlyKeepingTheChildIsAMachinesChoice) {
  EXPECT_TRUE(kernel_settings("troy.server=http://s troy.child=keep").keep_child);
  EXPECT_FALSE(kernel_settings("troy.server=http://s").keep_child);
  const auto reset = kernel_settings("troy.child=reset troy.child=../../x");
  EXPECT_FALSE(reset.keep_child);
  EXPECT_EQ(reset.ignored.size(), 2u);
}

TEST(KernelSettings, TheDiskIsNeverTakenFromTheCommandLine) {
  const auto settings = kernel_settings("troy.server=http://s troy.disk=sda troy.disk=serial=S3Z*");
  EXPECT_EQ(settings.server, "http://s");
  ASSERT_EQ(settings.ignored.size(), 2u);
  EXPECT_NE(settings.ignored[0].find("troy.disk=sda"), std::string::npos);
  EXPECT_NE(settings.ignored[0].find("signed manifest"), std::string::npos);
}

TEST(KernelSettings, AShellOrAnUnknownThenIsRefused) {
  for (const char* word : {"troy.then=shell", "troy.then=", "troy.then=reboot;sh", "troy.then"}) {
    const auto settings = kernel_settings(word);
    EXPECT_TRUE(settings.then.empty()) << word;
    EXPECT_EQ(settings.ignored.size(), 1u) << word;
  }
  EXPECT_EQ(kernel_settings("troy.then=reboot").then, "reboot");
}

TEST(KernelSettings, ABadWaitIsRefusedNotGuessed) {
  for (const char* word : {"troy.wait=-1", "troy.wait=1e3", "troy.wait=", "troy.wait=999999", "troy.wait=5s"}) {
    const auto settings = kernel_settings(word);
    EXPECT_FALSE(settings.wait.has_value()) << word;
    EXPECT_EQ(settings.ignored.size(), 1u) << word;
  }
  EXPECT_EQ(kernel_settings("troy.wait=0").wait, 0u);
}

TEST(KernelSettings, UnknownTroyWordsAreListed) {
  const auto settings = kernel_settings("troy.serve=http://typo troy.server=http://s");
  EXPECT_EQ(settings.server, "http://s");
  ASSERT_EQ(settings.ignored.size(), 1u);
  EXPECT_NE(settings.ignored[0].find("troy.serve=http://typo"), std::string::npos);
}

}  // namespace
}  // namespace troy::cli
