// The lab manifest's parser: what the boot payload may rely on once
// `troy verify-manifest` accepted a file. And Ed25519 signing round trips.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <tuple>
#include <vector>

#include "manifest.h"
#include "signature.h"

namespace troy::cli::manifest_test {
namespace {

const std::string kSha(64, 'a');
const std::string kGood =
    "troy-manifest 1\n"
    "disk-size 1048576\n"
    "version v1 base 0123abcd-0000-1111-2222-333344445555\n"
    "version v2 delta v1 versions/v2.avhdx 4096 " + kSha + " versions/v2.fingerprint 100 " + kSha + " 99aa\n"
    "version v3 delta v2 versions/v3.vhd 8192 " + kSha + " versions/v3.fingerprint 200 " + kSha + " 77bb\n"
    "disk size=1048576 serial=LAB-*\n"
    "disk model=Samsung?SSD*\n";

TEST(Manifest, ParsesAndSerializesTheSameBytes) {
  auto manifest = parse_manifest(kGood, "m");
  ASSERT_TRUE(manifest) << manifest.error().message;
  EXPECT_EQ(manifest->disk_size, 1048576u);
  ASSERT_EQ(manifest->versions.size(), 3u);
  EXPECT_TRUE(manifest->versions[0].is_base());
  EXPECT_EQ(manifest->versions[2].from, "v2");
  EXPECT_EQ(manifest->versions[2].file, "versions/v3.vhd");
  EXPECT_EQ(manifest->versions[2].fingerprint_size, 200u);
  EXPECT_EQ(manifest->disk_rules.size(), 2u);
  EXPECT_EQ(serialize(*manifest), kGood);
}

// Replaces the first occurrence of `from` in the good manifest.
std::string edited(const std::string& from, const std::string& to) {
  std::string text = kGood;
  const size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  return text.replace(at, from.size(), to);
}

void expect_refused(const std::string& text, const std::string& words) {
  auto manifest = parse_manifest(text, "lab/manifest");
  ASSERT_FALSE(manifest) << "accepted: " << text;
  EXPECT_NE(manifest.error().message.find("lab/manifest"), std::string::npos) << manifest.error().message;
  EXPECT_NE(manifest.error().message.find(words), std::string::npos) << manifest.error().message;
}

TEST(Manifest, RefusesEachKindOfDamageNamingTheLine) {
  expect_refused(edited("troy-manifest 1", "troy-manifest 2"), "line 1: not a troy manifest");
  expect_refused(kGood.substr(0, kGood.size() - 1), "last line is cut");
  expect_refused(edited("disk-size 1048576", "disk-size 1e6"), "line 2: disk-size");
  expect_refused(edited("disk-size 1048576\n", ""), "no disk-size");
  expect_refused(edited("disk-size 1048576\n", "disk-size 1048576\ndisk-size 1048576\n"), "line 3: disk-size");
  expect_refused(edited("version v1 base", "version v1 basis"), "line 3: version kind");
  expect_refused(edited("version v1 base", "version ../v1 base"), "line 3: version name");
  expect_refused(edited("version v2 delta v1", "version v2 delta v0"), "line 4: version v2 is a delta from 'v0'");
  expect_refused(edited("version v3 delta v2", "version v1 delta v2"), "line 5: version name 'v1' appears twice");
  expect_refused(edited("versions/v2.avhdx", "../v2.avhdx"), "line 4: a file is not a plain path");
  expect_refused(edited("versions/v2.avhdx", "/etc/passwd"), "line 4: a file is not a plain path");
  expect_refused(edited(" 4096 ", " 40x6 "), "line 4: a size");
  expect_refused(edited(" 4096 " + kSha, " 4096 " + std::string(64, 'A')), "line 4: a sha256");
  expect_refused(edited(" 99aa\n", " 99aa extra\n"), "line 4: a delta version line is");
  expect_refused(edited(" 99aa\n", " 99zz\n"), "line 4: the image id");
  expect_refused(edited("disk size=1048576", "disk size=1048576 colour=red"), "line 6: disk rule");
  expect_refused(edited("serial=LAB-*", "serial=LAB-*;reboot"), "line 6: disk rule");
  expect_refused(edited("serial=LAB-*", "serial=$(reboot)"), "line 6: disk rule");
  expect_refused(edited("disk model=", "disk  model="), "line 7");
  expect_refused(edited("disk model=Samsung?SSD*\n", "disks model=x\n"), "line 7: unknown record 'disks'");
  expect_refused(edited("version v1 base", "version v0 delta v1 versions/a 1 " + kSha + " versions/b 1 " + kSha +
                                                " 11\nversion v1 base"),
                 "line 3: the first version line must be the base");
}

TEST(Manifest, DiskRules) {
  EXPECT_EQ(*parse_disk_rule("size=100  serial=A*"), "size=100 serial=A*");
  EXPECT_FALSE(parse_disk_rule(""));
  EXPECT_FALSE(parse_disk_rule("size=abc"));
  EXPECT_FALSE(parse_disk_rule("model=a model=b"));
  EXPECT_FALSE(parse_disk_rule("serial=a,b"));  // ',' separates a troy.disk= rule's keys
  EXPECT_FALSE(parse_disk_rule("model=\"x\""));
}

// The good manifest with an `after` record: its 8th line.
const std::string kWithAfter = kGood + "after poweroff\n";

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  for (size_t start = 0; start < text.size();) {
    const size_t end = text.find('\n', start);
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

// The manifest with its line `number` (from 1) changed by `change`.
template <typename Change>
std::string with_line(const std::string& text, size_t number, Change change) {
  std::string result;
  auto lines = lines_of(text);
  for (size_t i = 0; i < lines.size(); i++) result += (i + 1 == number ? change(lines[i]) : lines[i]) + "\n";
  return result;
}

std::string line_label(size_t number) { return "line " + std::to_string(number) + ":"; }

TEST(Manifest, AfterPoweroffParsesAndSerializesTheSameBytes) {
  auto manifest = parse_manifest(kWithAfter, "m");
  ASSERT_TRUE(manifest) << manifest.error().message;
  EXPECT_EQ(manifest->after, "poweroff");
  EXPECT_EQ(serialize(*manifest), kWithAfter);
}

TEST(Manifest, AfterRebootParsesAndSerializesTheSameBytes) {
  auto manifest = parse_manifest(kGood + "after reboot\n", "m");
  ASSERT_TRUE(manifest) << manifest.error().message;
  EXPECT_EQ(manifest->after, "reboot");
  EXPECT_EQ(serialize(*manifest), kGood + "after reboot\n");
}

TEST(Manifest, WithoutAfterLeavesItEmpty) {
  auto manifest = parse_manifest(kGood, "m");
  ASSERT_TRUE(manifest) << manifest.error().message;
  EXPECT_EQ(manifest->after, "");
}

TEST(Manifest, AfterTwiceIsRefused) {
  expect_refused(kWithAfter + "after poweroff\n", "line 9: after");
  expect_refused(kGood + "after reboot\nafter poweroff\n", "line 9: after");
}

TEST(Manifest, AfterWithAnotherValueIsRefused) {
  expect_refused(kGood + "after shell\n", "line 8: after");
  expect_refused(kGood + "after Poweroff\n", "line 8: after");
  expect_refused(kGood + "after poweroff now\n", "line 8: after");
}

TEST(Manifest, AfterWithoutValueIsRefused) {
  expect_refused(kGood + "after\n", "line 8: after");
  expect_refused(kGood + "after \n", "line 8: after");
}

TEST(Manifest, RefusesCrlfOnAnyLine) {
  const size_t count = lines_of(kWithAfter).size();
  for (size_t number = 1; number <= count; number++)
    expect_refused(with_line(kWithAfter, number, [](const std::string& line) { return line + "\r"; }),
                   line_label(number));
  std::string all_crlf;
  for (const auto& line : lines_of(kWithAfter)) all_crlf += line + "\r\n";
  expect_refused(all_crlf, "line 1:");
}

TEST(Manifest, RefusesANulInAnyLine) {
  const size_t count = lines_of(kWithAfter).size();
  for (size_t number = 1; number <= count; number++) {
    expect_refused(with_line(kWithAfter, number, [](const std::string& line) { return line + '\0'; }),
                   line_label(number));
    expect_refused(with_line(kWithAfter, number,
                             [](std::string line) { return line.insert(line.find(' ') + 1, 1, '\0'); }),
                   line_label(number));
  }
  expect_refused(edited("versions/v2.avhdx", std::string("versions/v2\0.avhdx", 18)), "line 4:");
  expect_refused(edited("serial=LAB-*", std::string("serial=LAB-\0*", 13)), "line 6:");
}

std::string tab_for(std::string line, size_t space) {
  EXPECT_NE(space, std::string::npos) << line;
  if (space < line.size()) line[space] = '\t';
  return line;
}

TEST(Manifest, RefusesATabInsteadOfASpace) {
  const size_t count = lines_of(kWithAfter).size();
  for (size_t number = 1; number <= count; number++) {
    expect_refused(with_line(kWithAfter, number, [](std::string line) { return tab_for(line, line.find(' ')); }),
                   line_label(number));
    expect_refused(with_line(kWithAfter, number, [](std::string line) { return tab_for(line, line.rfind(' ')); }),
                   line_label(number));
  }
}

const std::string kMegabyte(1 << 20, 'a');

TEST(Manifest, RefusesAMegabyteLine) {
  expect_refused(kGood + kMegabyte + "\n", "line 8:");
  expect_refused(kGood + "after " + kMegabyte + "\n", "line 8:");
  expect_refused(edited("disk-size 1048576", "disk-size 1" + std::string(1 << 20, '0')), "line 2:");
  expect_refused(edited("version v1 base", "version v" + kMegabyte + " base"), "line 3:");
  expect_refused(edited("0123abcd-0000", kMegabyte), "line 3:");
  expect_refused(edited("versions/v2.avhdx", "versions/" + kMegabyte), "line 4:");
  expect_refused(edited("versions/v3.fingerprint", "versions/" + kMegabyte), "line 5:");
  expect_refused(edited("disk model=Samsung?SSD*", "disk model=Samsung?SSD*" + std::string(1 << 20, ' ')), "line 7:");
}

// Disk rule values are bounded (128 characters) like every other field.
TEST(Manifest, RefusesAMegabyteDiskGlob) {
  for (const auto& [from, to, label] : {std::tuple{"disk model=Samsung?SSD*", "disk model=" + kMegabyte, "line 7:"},
                                        std::tuple{"serial=LAB-*", "serial=LAB-" + kMegabyte, "line 6:"}}) {
    auto manifest = parse_manifest(edited(from, to), "lab/manifest");
    if (manifest) {
      ADD_FAILURE() << "a disk line of " << to.size() << " bytes accepted";
      continue;
    }
    EXPECT_NE(manifest.error().message.find(label), std::string::npos) << manifest.error().message.substr(0, 200);
  }
}

TEST(Manifest, RefusesADeltaFileOutsideTheServedFolder) {
  for (const std::string file :
       {"../x", "/etc/passwd", "versions/../../x", "versions/./x", "versions//x", "versions/"}) {
    expect_refused(edited("versions/v2.avhdx", file), "line 4: a file is not a plain path");
    expect_refused(edited("versions/v3.fingerprint", file), "line 5: a file is not a plain path");
  }
}

TEST(Manifest, RefusesASizeWithLeadingZerosAMinusOrPast64Bits) {
  for (const std::string size : {"04096", "-4096", "+4096", "18446744073709551616", "99999999999999999999999"}) {
    expect_refused(edited("disk-size 1048576", "disk-size " + size), "line 2: disk-size");
    expect_refused(edited(" 4096 ", " " + size + " "), "line 4: a size");
    expect_refused(edited(" 200 ", " " + size + " "), "line 5: a size");
    expect_refused(edited("disk size=1048576", "disk size=" + size), "line 6: disk rule");
  }
}

TEST(Manifest, AcceptsTheLargest64BitSize) {
  auto manifest = parse_manifest(edited(" 4096 ", " 18446744073709551615 "), "m");
  ASSERT_TRUE(manifest) << manifest.error().message;
  EXPECT_EQ(manifest->versions[1].size, UINT64_MAX);
}

TEST(Manifest, RefusesShellSyntaxInADiskGlob) {
  for (const std::string glob : {"$(reboot)", "${IFS}", "LAB\"*", "LAB'*", "`reboot`", "LAB-*;reboot", "LAB\\*",
                                 "LAB|x", "LAB&", "LAB>x", "LAB<x", "LAB,x"}) {
    expect_refused(edited("serial=LAB-*", "serial=" + glob), "line 6: disk rule");
    expect_refused(edited("model=Samsung?SSD*", "model=" + glob), "line 7: disk rule");
  }
}

TEST(Manifest, RefusesADiskLineWithoutARule) {
  expect_refused(kGood + "disk\n", "line 8:");
  expect_refused(kGood + "disk \n", "line 8:");
  expect_refused(kGood + "disk model=\n", "line 8:");
}

// ---- serial and expiry: replayed and expired manifests ----

const std::string kFresh = "troy-manifest 1\nserial 7\npublished 2026-09-01T08:00:00Z\nexpires 2026-10-01T08:00:00Z\n" +
                           kGood.substr(std::string("troy-manifest 1\n").size());
constexpr int64_t kPublished = 1788249600;  // 2026-09-01T08:00:00Z

// Native-VHD-boot labs (lab/vhdboot.h): the layout line, parsed strictly.
const std::string kLayout = "layout vhdboot number=2,label=TROY troy/base.vhdx troy/student.vhdx reset\n";

TEST(ManifestVhdBoot, LayoutParsesAndSerializesTheSameBytes) {
  auto manifest = parse_manifest(kGood + kLayout, "m");
  ASSERT_TRUE(manifest) << manifest.error().message;
  ASSERT_TRUE(manifest->vhdboot);
  EXPECT_EQ(manifest->vhdboot->partition_rule, "number=2,label=TROY");
  EXPECT_EQ(manifest->vhdboot->base, "troy/base.vhdx");
  EXPECT_EQ(manifest->vhdboot->child, "troy/student.vhdx");
  EXPECT_FALSE(manifest->vhdboot->keep_child);
  EXPECT_EQ(serialize(*manifest), kGood + kLayout);
  auto kept = parse_manifest(kGood + "layout vhdboot size=1048576 b.vhdx c.vhdx keep\n", "m");
  ASSERT_TRUE(kept) << kept.error().message;
  EXPECT_TRUE(kept->vhdboot->keep_child);
  auto plain = parse_manifest(kGood, "m");
  ASSERT_TRUE(plain);
  EXPECT_FALSE(plain->vhdboot);  // a raw-disk lab
  // A VHD lab (Windows 7 boots .vhd): base and child both .vhd.
  const std::string vhd_line = "layout vhdboot number=3 troy/base.vhd troy/student.VHD reset\n";
  auto vhd = parse_manifest(kGood + vhd_line, "m");
  ASSERT_TRUE(vhd) << vhd.error().message;
  EXPECT_EQ(vhd->vhdboot->base, "troy/base.vhd");
  EXPECT_EQ(vhd->vhdboot->child, "troy/student.VHD");
  EXPECT_EQ(serialize(*vhd), kGood + vhd_line);
}

TEST(ManifestVhdBoot, RefusesHostileLayoutsNamingTheFileAndField) {
  const std::string line8 = "line 8: ";
  auto layout = [](const std::string& rule, const std::string& base, const std::string& child,
                   const std::string& policy = "reset") {
    return kGood + "layout vhdboot " + rule + " " + base + " " + child + " " + policy + "\n";
  };
  expect_refused(layout("number=2", "../base.vhdx", "c.vhdx"), line8 + "base path '../base.vhdx'");
  expect_refused(layout("number=2", "troy/../../etc/x.vhdx", "c.vhdx"), "base path");
  expect_refused(layout("number=2", "/troy/base.vhdx", "c.vhdx"), "base path '/troy/base.vhdx': absolute");
  expect_refused(layout("number=2", "b.vhdx", "troy//c.vhdx"), "child path");
  expect_refused(layout("number=2", "b.vhdx", "./c.vhdx"), "child path");
  expect_refused(layout("number=2", "b\\x.vhdx", "c.vhdx"), "base path");
  expect_refused(layout("number=2", "b$(reboot).vhdx", "c.vhdx"), "base path");
  expect_refused(layout("number=2", "base.img", "c.vhdx"), "base path 'base.img': not a .vhdx or .vhd file");
  expect_refused(layout("number=2", "base.vhd", "c.vhdx"),
                 line8 + "child path 'c.vhdx': a .vhdx file, but the base 'base.vhd' is .vhd");
  expect_refused(layout("number=2", "base.vhdx", "c.vhd"), "child path 'c.vhd': a .vhd file, but the base");
  expect_refused(layout("number=2", "b.vhdx", "b.vhdx"), "the same file as the base");
  expect_refused(layout("number=2", std::string(2000, 'a') + ".vhdx", "c.vhdx"), "base path");
  expect_refused(layout("number=2", "b.vhdx", "c.vhdx", "sometimes"), "child policy 'sometimes'");
  expect_refused(layout("number=0", "b.vhdx", "c.vhdx"), "partition rule");
  expect_refused(layout("number=99999999999999999999", "b.vhdx", "c.vhdx"), "partition rule");
  expect_refused(layout("colour=red", "b.vhdx", "c.vhdx"), "unknown key 'colour'");
  expect_refused(layout("number=2,number=3", "b.vhdx", "c.vhdx"), "number given twice");
  expect_refused(layout("label=" + std::string(1 << 20, 'x'), "b.vhdx", "c.vhdx"), "partition rule");
  expect_refused(layout("label=$(id)", "b.vhdx", "c.vhdx"), "partition rule");
  expect_refused(layout("label=TROY,number=2", "b.vhdx", "c.vhdx"), "not written as troy publish writes it");
  expect_refused(kGood + "layout vhdboot number=2 b.vhdx\n", "layout vhdboot PARTITION-RULE BASE CHILD");
  expect_refused(kGood + "layout raw number=2 b.vhdx c.vhdx reset\n", "a layout line is");
  expect_refused(kGood + kLayout + kLayout, "line 9: a second layout line");
  // The error line stays short however long the hostile value.
  auto huge = parse_manifest(layout("label=" + std::string(1 << 20, 'x'), "b.vhdx", "c.vhdx"), "m");
  ASSERT_FALSE(huge);
  EXPECT_LT(huge.error().message.size(), 400u);
}

TEST(ManifestFreshness, SerialAndTimesParseAndSerializeTheSameBytes) {
  auto manifest = parse_manifest(kFresh, "m");
  ASSERT_TRUE(manifest) << manifest.error().message;
  EXPECT_EQ(manifest->serial, 7u);
  EXPECT_EQ(manifest->published, kPublished);
  EXPECT_EQ(manifest->expires, kPublished + 30 * 86400);
  EXPECT_EQ(serialize(*manifest), kFresh);
}

TEST(ManifestFreshness, RefusesBadOrRepeatedLines) {
  for (const char* line : {"serial 0\n", "serial x\n", "serial 7\n", "expires 2026-02-30T00:00:00Z\n",
                                  "published 2026-09-01 08:00:00\n", "expires 2026-09-01T08:00:00+01:00\n"}) {
    const std::string text = kFresh + std::string(line);
    EXPECT_FALSE(parse_manifest(text, "m")) << line;
  }
  std::string backwards = kFresh;
  backwards.replace(backwards.find("expires 2026-10"), 15, "expires 2026-08");
  auto refused = parse_manifest(backwards, "m");
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("is not after published"), std::string::npos) << refused.error().message;
}

TEST(ManifestFreshness, RefusesNoSerialALowerSerialAndAnExpiredManifest) {
  const Manifest fresh = *parse_manifest(kFresh, "m");
  std::string warning;
  EXPECT_TRUE(manifest_freshness(fresh, "m", kPublished + 60, 0, warning));
  EXPECT_TRUE(manifest_freshness(fresh, "m", kPublished + 60, 7, warning));  // the same again
  EXPECT_TRUE(warning.empty());
  auto older = manifest_freshness(fresh, "m", kPublished + 60, 8, warning);
  ASSERT_FALSE(older);
  EXPECT_NE(older.error().message.find("serial 7 is older than serial 8"), std::string::npos) << older.error().message;
  auto expired = manifest_freshness(fresh, "m", kPublished + 31 * 86400, 0, warning);
  ASSERT_FALSE(expired);
  EXPECT_NE(expired.error().message.find("expired at 2026-10-01T08:00:00Z"), std::string::npos)
      << expired.error().message;
  auto old = manifest_freshness(*parse_manifest(kGood, "m"), "m", kPublished, 0, warning);
  ASSERT_FALSE(old);
  EXPECT_NE(old.error().message.find("no serial"), std::string::npos) << old.error().message;
}

TEST(ManifestFreshness, AClockBeforeThePublishTimeWarnsButTheSerialStillHolds) {
  const Manifest fresh = *parse_manifest(kFresh, "m");
  std::string warning;
  EXPECT_TRUE(manifest_freshness(fresh, "m", 0, 0, warning));  // a clock at 1970
  EXPECT_NE(warning.find("expiry cannot be checked"), std::string::npos) << warning;
  EXPECT_FALSE(manifest_freshness(fresh, "m", 0, 9, warning));
}

TEST(Signature, SignsAndVerifiesWithOpensslKeys) {
  char folder[] = "/tmp/troy-signature-test.XXXXXX";
  ASSERT_NE(mkdtemp(folder), nullptr);
  const std::string dir = folder;
  const std::string command = "openssl genpkey -algorithm ed25519 -out " + dir + "/k 2>/dev/null && openssl pkey -in " +
                              dir + "/k -pubout -out " + dir + "/k.pub && openssl genpkey -algorithm ed25519 -out " +
                              dir + "/other 2>/dev/null";
  ASSERT_EQ(std::system(command.c_str()), 0);
  auto private_key = load_ed25519_key(dir + "/k", false);
  auto public_key = load_ed25519_key(dir + "/k.pub", true);
  auto other_key = load_ed25519_key(dir + "/other", false);
  ASSERT_TRUE(private_key && public_key && other_key);
  const std::string message = kGood;
  auto signature = sign(*private_key, "k", std::as_bytes(std::span(message)));
  ASSERT_TRUE(signature);
  EXPECT_EQ(signature->size(), 88u);
  EXPECT_TRUE(verify(*public_key, std::as_bytes(std::span(message)), *signature + "\n", "sig"));
  EXPECT_TRUE(verify(*private_key, std::as_bytes(std::span(message)), *signature, "sig"));
  EXPECT_FALSE(verify(*other_key, std::as_bytes(std::span(message)), *signature, "sig"));
  std::string changed = message;
  changed[20] ^= 1;
  EXPECT_FALSE(verify(*public_key, std::as_bytes(std::span(changed)), *signature, "sig"));
  EXPECT_FALSE(verify(*public_key, std::as_bytes(std::span(message)), signature->substr(4), "sig"));
  EXPECT_FALSE(verify(*public_key, std::as_bytes(std::span(message)), "not base64!", "sig"));
  EXPECT_FALSE(load_ed25519_key(dir + "/k.pub", false));  // a public key cannot sign
  EXPECT_FALSE(load_ed25519_key(dir + "/missing", true));
  std::system(("rm -rf " + dir).c_str());
}

}  // namespace
}  // namespace troy::cli::manifest_test
