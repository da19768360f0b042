// The lab server's CGI handlers (tools/lab/server.h), each case in a served
// directory of its own: what a machine's report leaves behind, every way a
// report is refused with nothing written, the log's rotation, the boot
// script with and without the boot-local flag and with hostile parameters,
// and the status table over a log with garbage in it.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "server.h"
#include "status_page.h"
#include "signature.h"

namespace troy::cli {
namespace {

namespace fs = std::filesystem;

const std::string kMachine = "52-54-00-00-00-01";
// 2026-09-01T08:00:00Z
const std::chrono::system_clock::time_point kNow = std::chrono::system_clock::from_time_t(1788249600);

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

nlohmann::json good_report() {
  return {{"machine", "52:54:00:00:00:01"},
          {"result", "ok"},
          {"version", "v3"},
          {"message", "brought to v3"},
          {"disk", "/dev/vda"},
          {"troy_report", 1},
          {"steps", nlohmann::json::array({{{"bytes_written", 4096}, {"delta", "v2"}}})}};
}

CgiRequest post(const std::string& body) {
  CgiRequest request;
  request.method = "POST";
  request.content_length = std::to_string(body.size());
  request.remote_address = "10.0.0.51";
  request.body = body;
  return request;
}

CgiRequest boot_request(const std::string& query) {
  CgiRequest request;
  request.method = "GET";
  request.query = query;
  request.host = "10.0.0.1:8080";
  request.server_address = "10.0.0.1";
  request.server_port = "8080";
  return request;
}

class LabServer : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "troy-lab-server.XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    root_ = pattern;
    served_ = root_ / "served";
    write_text(served_ / "boot/cmdline", "console=ttyS0 troy.then=poweroff\nsecond line ignored\n");
  }
  void TearDown() override { fs::remove_all(root_); }

  CgiResponse report(const CgiRequest& request) { return handle_report(served_.string(), request, kNow); }
  CgiResponse boot(const CgiRequest& request) { return handle_boot(served_.string(), request, kNow); }
  // SERVED/manifest as troy publish leaves it, `newest` its last version.
  void publish_newest(const std::string& newest) {
    write_text(served_ / "manifest", "troy-manifest 1\ndisk-size 1048576\nversion " + newest + " base 0123abcd\n");
  }
  fs::path reports() const { return served_ / "reports"; }

  // A refused report: a 4xx answer naming `words`, and no reports/ folder at all.
  void expect_refused(const CgiRequest& request, const std::string& status, const std::string& words) {
    const CgiResponse response = report(request);
    EXPECT_EQ(response.status, status) << response.body;
    EXPECT_NE(response.body.find(words), std::string::npos) << response.body;
    EXPECT_EQ(std::count(response.body.begin(), response.body.end(), '\n'), 1) << response.body;
    EXPECT_FALSE(fs::exists(reports())) << "written for: " << request.body.substr(0, 200);
  }
  void expect_refused(const std::string& body, const std::string& words) {
    expect_refused(post(body), "400 Bad Request", words);
  }
  void expect_refused_with(const char* field, const nlohmann::json& value, const std::string& words) {
    nlohmann::json body = good_report();
    body[field] = value;
    expect_refused(body.dump(), words);
  }

  fs::path root_;
  fs::path served_;
};

TEST_F(LabServer, StoresALogLineAndTheFlagForAGoodReport) {
  const CgiResponse response = report(post(good_report().dump()));
  EXPECT_EQ(response.status, "200 OK");
  EXPECT_EQ(response.body, "report stored\n");

  const auto stored = nlohmann::json::parse(read_text(reports() / (kMachine + ".json")));
  EXPECT_EQ(stored["machine"], kMachine);
  EXPECT_EQ(stored["received"], "2026-09-01T08:00:00Z");
  EXPECT_EQ(stored["address"], "10.0.0.51");
  EXPECT_EQ(stored["steps"][0]["bytes_written"], 4096);  // other fields kept as they came
  EXPECT_EQ(stored["disk"], "/dev/vda");
  EXPECT_EQ(stored["troy_report"], 1);

  const std::string log = read_text(reports() / "log.jsonl");
  EXPECT_EQ(log,
            "{\"time\":\"2026-09-01T08:00:00Z\",\"machine\":\"52-54-00-00-00-01\",\"address\":\"10.0.0.51\","
            "\"result\":\"ok\",\"version\":\"v3\",\"message\":\"brought to v3\",\"auth\":\"none\"}\n");
  EXPECT_TRUE(fs::exists(reports() / (kMachine + ".boot")));
  for (const auto& entry : fs::directory_iterator(reports()))  // no temporary file left behind
    EXPECT_NE(entry.path().filename().string().front(), '.') << entry.path();
}

TEST_F(LabServer, ASecondReportReplacesTheFirstAndAppendsALine) {
  ASSERT_EQ(report(post(good_report().dump())).status, "200 OK");
  nlohmann::json second = good_report();
  second["result"] = "error";
  second["version"] = "";
  second["message"] = "sha256 of versions/v3.avhdx\tdiffers\nfrom the manifest";
  second["machine"] = "52-54-00-00-00-01";
  ASSERT_EQ(report(post(second.dump())).status, "200 OK");
  EXPECT_EQ(nlohmann::json::parse(read_text(reports() / (kMachine + ".json")))["result"], "error");
  std::istringstream log(read_text(reports() / "log.jsonl"));
  std::vector<nlohmann::json> lines;
  for (std::string line; std::getline(log, line);) lines.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(lines.size(), 2u);  // the message's newline stays inside its line
  EXPECT_EQ(lines[1]["message"], second["message"]);
  EXPECT_EQ(lines[1]["version"], "");
}

TEST_F(LabServer, AnIncompleteDiskGetsThePayloadAgainNotTheLocalDisk) {
  nlohmann::json body = good_report();
  body["result"] = "error";
  body["version"] = "incomplete";
  ASSERT_EQ(report(post(body.dump())).status, "200 OK");
  EXPECT_TRUE(fs::exists(reports() / (kMachine + ".json")));
  EXPECT_FALSE(fs::exists(reports() / (kMachine + ".boot-local")));
}

TEST_F(LabServer, RefusesBadRequestsBeforeReadingTheBody) {
  CgiRequest get = post(good_report().dump());
  get.method = "GET";
  expect_refused(get, "405 Method Not Allowed", "POST");

  CgiRequest no_length = post(good_report().dump());
  no_length.content_length.reset();
  expect_refused(no_length, "411 Length Required", "CONTENT_LENGTH");
  no_length.content_length = "";
  expect_refused(no_length, "411 Length Required", "CONTENT_LENGTH");

  for (const char* length : {"12a", "-1", " 12", "0x10", "1e3"}) {
    CgiRequest request = post(good_report().dump());
    request.content_length = length;
    expect_refused(request, "400 Bad Request", "CONTENT_LENGTH");
  }
  for (const char* length : {"1048577", "99999999999999999999999999"}) {
    CgiRequest request = post(good_report().dump());
    request.content_length = length;
    EXPECT_TRUE(refuse_report_early(request));
    expect_refused(request, "413 Payload Too Large", "at most 1048576 bytes");
  }
  expect_refused(post(std::string(kMaxReportBytes + 1, ' ')), "413 Payload Too Large", "CONTENT_LENGTH");
  EXPECT_FALSE(refuse_report_early(post(good_report().dump())));

  CgiRequest short_body = post(good_report().dump());
  short_body.content_length = std::to_string(short_body.body.size() + 10);
  expect_refused(short_body, "400 Bad Request", "CONTENT_LENGTH");
}

TEST_F(LabServer, RefusesBodiesThatAreNotAReportObject) {
  expect_refused("", "not JSON");
  expect_refused("machine=52:54:00:00:00:01&result=ok", "not JSON");
  expect_refused(good_report().dump() + "x", "not JSON");
  expect_refused("{\"machine\":\"52:54:00:00:00:01\",\"message\":\"\xff\xfe\"}", "not JSON");  // not UTF-8
  expect_refused("[1,2,3]", "not a JSON object");
  expect_refused("\"a string\"", "not a JSON object");
  expect_refused("null", "not a JSON object");
  // A stack-deep body is refused without recursing once per level.
  expect_refused("{\"steps\":" + std::string(400000, '[') + std::string(400000, ']') + "}", "deeper than 64");
}

TEST_F(LabServer, RefusesEachBadFieldNamingIt) {
  for (const char* field : {"machine", "result", "version", "message"}) {
    nlohmann::json body = good_report();
    body.erase(field);
    expect_refused(body.dump(), std::string(field) + ": missing");
    expect_refused_with(field, 5, std::string(field) + ": not a JSON string");
    expect_refused_with(field, nullptr, std::string(field) + ": not a JSON string");
    expect_refused_with(field, nlohmann::json::array({"x"}), std::string(field) + ": not a JSON string");
  }
  for (const char* machine : {"", "52:54:00:00:00", "52:54:00:00:00:01:02", "52_54_00_00_00_01", "52:54:00:00:00:0g",
                              "../../manifest", "525400000001", "52:54:00:00:00:1 "})
    expect_refused_with("machine", machine, "machine: not a MAC address");
  for (const char* result : {"", "OK", "fine", "ok "}) expect_refused_with("result", result, "result: not \"ok\", \"error\" or \"progress\"");
  for (const std::string& version : std::vector<std::string>{"../x", ".hidden", "v 1", "v1/..", std::string(65, 'v'), "v\n1"})
    expect_refused_with("version", version, "version: not a version name");
  expect_refused_with("message", std::string(kMaxReportMessageBytes + 1, 'm'), "message: 4097 bytes");
}

TEST_F(LabServer, AcceptsEachFormOfTheFields) {
  for (const char* machine : {"52:54:00:AB:cd:EF", "52-54-00-ab-cd-ef"}) {
    nlohmann::json body = good_report();
    body["machine"] = machine;
    ASSERT_EQ(report(post(body.dump())).status, "200 OK") << machine;
  }
  EXPECT_TRUE(fs::exists(reports() / "52-54-00-ab-cd-ef.json"));
  for (const std::string& version : std::vector<std::string>{"", "incomplete", "2026-09_a.1", std::string(64, 'v')}) {
    nlohmann::json body = good_report();
    body["version"] = version;
    body["message"] = std::string(kMaxReportMessageBytes, 'm');
    EXPECT_EQ(report(post(body.dump())).status, "200 OK") << version;
  }
}

TEST_F(LabServer, RotatesTheLogPastSixteenMebibytes) {
  fs::create_directories(reports());
  { std::ofstream(reports() / "log.jsonl") << "old line\n"; }
  fs::resize_file(reports() / "log.jsonl", kReportLogRotateBytes - 10);
  write_text(reports() / "log.jsonl.1", "the oldest log\n");
  ASSERT_EQ(report(post(good_report().dump())).status, "200 OK");
  EXPECT_EQ(fs::file_size(reports() / "log.jsonl.1"), kReportLogRotateBytes - 10);  // the full log, replacing the oldest
  const std::string log = read_text(reports() / "log.jsonl");
  EXPECT_EQ(std::count(log.begin(), log.end(), '\n'), 1);
  EXPECT_NE(log.find(kMachine), std::string::npos);

  ASSERT_EQ(report(post(good_report().dump())).status, "200 OK");  // far below the limit: appended
  const std::string appended = read_text(reports() / "log.jsonl");
  EXPECT_EQ(std::count(appended.begin(), appended.end(), '\n'), 2);
  EXPECT_EQ(fs::file_size(reports() / "log.jsonl.1"), kReportLogRotateBytes - 10);
}

TEST_F(LabServer, AnswersAServerErrorWhenTheReportCannotBeStored) {
  write_text(served_ / "reports", "a file where the folder should be");
  const CgiResponse response = report(post(good_report().dump()));
  EXPECT_EQ(response.status, "500 Internal Server Error");
  EXPECT_NE(response.body.find("reports"), std::string::npos) << response.body;
}

TEST_F(LabServer, BootsTheLocalDiskWhileTheLastReportHoldsTheNewestVersion) {
  publish_newest("v3");
  const std::string payload = boot(boot_request("mac=52-54-00-00-00-01&platform=pcbios")).body;
  EXPECT_EQ(payload,
            "#!ipxe\n"
            "echo Troy: loading the boot payload from http://10.0.0.1:8080\n"
            "kernel http://10.0.0.1:8080/boot/vmlinuz initrd=initrd.img troy.server=http://10.0.0.1:8080 "
            "console=ttyS0 troy.then=poweroff || goto failed\n"
            "initrd http://10.0.0.1:8080/boot/initrd.img || goto failed\n"
            "boot || goto failed\n"
            ":failed\n"
            "echo Troy: could not load the boot payload from http://10.0.0.1:8080; booting the local disk in 10 s\n"
            "sleep 10\n"
            "iseq ${platform} pcbios && sanboot --no-describe --drive 0x80 ||\n"
            "exit\n");

  ASSERT_EQ(report(post(good_report().dump())).status, "200 OK");
  const CgiResponse local = boot(boot_request("platform=efi&mac=52:54:00:00:00:01"));
  EXPECT_EQ(local.status, "200 OK");
  EXPECT_EQ(local.body,
            "#!ipxe\n"
            "echo Troy: machine 52-54-00-00-00-01 holds the newest version; booting its local disk\n"
            "iseq ${platform} pcbios && sanboot --no-describe --drive 0x80 ||\n"
            "exit\n");
  // A state, not a flag: boot requests (anyone's) change nothing.
  EXPECT_EQ(boot(boot_request("mac=52-54-00-00-00-01&platform=efi")).body, local.body);
  EXPECT_EQ(boot(boot_request("mac=52-54-00-00-00-01&platform=efi")).body, local.body);
  publish_newest("v4");  // a new version: the payload again
  EXPECT_EQ(boot(boot_request("mac=52-54-00-00-00-01&platform=efi")).body, payload);
}

TEST_F(LabServer, AnErrorBootsTheLocalDiskForAWhileThenThePayload) {
  publish_newest("v3");
  nlohmann::json body = good_report();
  body["result"] = "error";
  body["version"] = "v2";
  ASSERT_EQ(report(post(body.dump())).status, "200 OK");
  const auto at = [this](int seconds) {
    return handle_boot(served_.string(), boot_request("mac=52-54-00-00-00-01"), kNow + std::chrono::seconds(seconds)).body;
  };
  EXPECT_NE(at(60).find("sanboot --no-describe --drive 0x80 ||\nexit"), std::string::npos) << at(60);
  EXPECT_EQ(at(60).find("initrd="), std::string::npos);
  EXPECT_NE(at(kBootLocalAfterErrorSeconds + 1).find("initrd="), std::string::npos);
}

// A native-VHD-boot lab resets the student's child in the payload: the
// local disk only for the reboot right after the report, then the payload
// again at every boot; a lab that keeps children boots local as usual.
TEST_F(LabServer, AVhdBootLabBootsThePayloadAgainAfterTheReportsReboot) {
  const auto manifest = [this](const std::string& policy) {
    write_text(served_ / "manifest", "troy-manifest 1\ndisk-size 1048576\nversion v3 base 0123abcd\n"
                                     "layout vhdboot number=2 troy/base.vhdx troy/student.vhdx " + policy + "\n");
  };
  manifest("reset");
  ASSERT_EQ(report(post(good_report().dump())).status, "200 OK");
  const auto at = [this](int64_t seconds) {
    return handle_boot(served_.string(), boot_request("mac=52-54-00-00-00-01"), kNow + std::chrono::seconds(seconds)).body;
  };
  EXPECT_NE(at(30).find("sanboot"), std::string::npos) << at(30);
  EXPECT_EQ(at(30), at(60));  // requests change nothing
  EXPECT_NE(at(kVhdBootLocalAfterReportSeconds + 1).find("initrd="), std::string::npos);
  EXPECT_NE(at(24 * 3600).find("initrd="), std::string::npos);
  manifest("keep");
  EXPECT_NE(at(24 * 3600).find("sanboot"), std::string::npos);
}

// +keep-child in the hosts file: that machine's payload gets troy.child=keep.
TEST_F(LabServer, AKeepChildTagAddsTheKernelArgumentForThatMachineOnly) {
  write_text(served_ / "hosts", "52:54:00:00:00:01 PC-01 +keep-child\n52:54:00:00:00:02 PC-02\n");
  const auto script = [this](const std::string& mac) {
    return handle_boot(served_.string(), boot_request("mac=" + mac), kNow, (served_ / "hosts").string()).body;
  };
  EXPECT_NE(script("52-54-00-00-00-01").find(" troy.child=keep"), std::string::npos) << script("52-54-00-00-00-01");
  EXPECT_EQ(script("52-54-00-00-00-02").find("troy.child"), std::string::npos) << script("52-54-00-00-00-02");
  EXPECT_EQ(handle_boot(served_.string(), boot_request("mac=52-54-00-00-00-01"), kNow).body.find("troy.child"),
            std::string::npos);
}

TEST_F(LabServer, HostileBootParametersNeverReachAFileOrTheScript) {
  const std::string payload = boot(boot_request("mac=52-54-00-00-00-01&platform=pcbios")).body;
  // Files a naive flag path would remove: SERVED/reports/<mac>.boot-local.
  write_text(served_ / "manifest.boot-local", "x");
  write_text(root_ / "manifest.boot-local", "x");
  write_text(reports() / "x.boot-local", "x");
  write_text(reports() / (kMachine + ".boot-local"), "");
  for (const char* query : {"mac=../../manifest", "mac=../manifest", "mac=..%2F..%2Fmanifest", "mac=x", "mac=",
                            "mac=52-54-00-00-00-01%00", "mac=%zz", "", "platform=pcbios"}) {
    const CgiResponse response = boot(boot_request(query));
    EXPECT_EQ(response.status, "200 OK") << query;
    EXPECT_EQ(response.body, payload) << query;
  }
  EXPECT_TRUE(fs::exists(served_ / "manifest.boot-local"));
  EXPECT_TRUE(fs::exists(root_ / "manifest.boot-local"));
  EXPECT_TRUE(fs::exists(reports() / "x.boot-local"));
  EXPECT_TRUE(fs::exists(reports() / (kMachine + ".boot-local")));  // not even "52-54-00-00-00-01\0"
  fs::remove(reports() / (kMachine + ".boot-local"));

  for (const char* platform : {"pc%20bios", "efi%0Ashell", "${x}", "a\"b"})
    EXPECT_EQ(boot(boot_request(std::string("mac=52-54-00-00-00-01&platform=") + platform)).body, payload);

  // A Host header that is not host[:port]: the address the server received on.
  for (const char* host : {"evil host:80", "a\"b", "x' || shell", "$(reboot)", "a\nb", "${net0/ip}", "-x"}) {
    CgiRequest request = boot_request("mac=52-54-00-00-00-01");
    request.host = host;
    request.server_address = "10.0.0.2";
    request.server_port = "81";
    const CgiResponse response = boot(request);
    EXPECT_NE(response.body.find("troy.server=http://10.0.0.2:81 "), std::string::npos) << host << response.body;
  }
  CgiRequest ipv6 = boot_request("");
  ipv6.host = "";
  ipv6.server_address = "fd00::1";
  EXPECT_NE(boot(ipv6).body.find("troy.server=http://[fd00::1]:8080 "), std::string::npos);
  CgiRequest nothing_usable = boot_request("");
  nothing_usable.host = "a b";
  nothing_usable.server_address = "a b";
  EXPECT_EQ(boot(nothing_usable).status, "400 Bad Request");
}

TEST_F(LabServer, TheKernelArgumentsComeFromOnePrintableLine) {
  write_text(served_ / "boot/cmdline", "quiet\r\n");
  EXPECT_NE(boot(boot_request("")).body.find("troy.server=http://10.0.0.1:8080 quiet || goto failed\n"),
            std::string::npos);
  fs::remove(served_ / "boot/cmdline");
  EXPECT_NE(boot(boot_request("")).body.find("troy.server=http://10.0.0.1:8080  || goto failed\n"),
            std::string::npos);  // no file, no arguments (as before)
  write_text(served_ / "boot/cmdline", "quiet\x1b[2J\n");
  const CgiResponse control = boot(boot_request(""));
  EXPECT_EQ(control.status, "500 Internal Server Error");
  EXPECT_NE(control.body.find("boot/cmdline: line 1"), std::string::npos) << control.body;
  write_text(served_ / "boot/cmdline", std::string(5000, 'a'));
  EXPECT_EQ(boot(boot_request("")).status, "500 Internal Server Error");
}

TEST_F(LabServer, StatusTakesEachMachinesNewestLineAndSkipsGarbage) {
  auto empty = status_rows(served_.string());
  ASSERT_TRUE(empty) << empty.error().message;
  EXPECT_EQ(format_status_table(*empty), "no machine has reported yet\n");
  EXPECT_EQ(nlohmann::json::parse(format_status_json(*empty)),
            nlohmann::json::parse("{\"machines\":[],\"skipped_lines\":0}"));

  auto line = [](const std::string& machine, const std::string& time, const std::string& result,
                 const std::string& version, const std::string& message) {
    return nlohmann::json{{"time", time},       {"machine", machine}, {"address", "10.0.0.9"},
                          {"result", result},   {"version", version}, {"message", message}}
               .dump() +
           "\n";
  };
  write_text(reports() / "log.jsonl.1", line("52-54-00-00-00-09", "2026-08-01T00:00:00Z", "ok", "v1", "old") +
                                            line("52-54-00-00-00-02", "2026-08-01T00:00:00Z", "ok", "v1", "old"));
  write_text(reports() / "log.jsonl",
             line("52-54-00-00-00-02", "2026-09-01T08:00:00Z", "error", "", "no disk\tmatches\x1b[31m") +
                 "not json at all\n" + "{\"machine\":\"52-54-00-00-00-03\"}\n" + "[1,2]\n" + "{\"time\":5}\n" +
                 std::string(100000, '[') + "\n" + "\n" +
                 line("../../etc", "2026-09-01T08:00:00Z", "ok", "v3", "not a machine") +
                 line("52-54-00-00-00-01", "2026-09-01T08:00:00Z", "ok", "v3", "brought to v3") +
                 "{\"time\":\"2026-09-01T08:01:00Z\",\"machine\":\"52-54-00-00-00-01\"");  // cut short
  auto status = status_rows(served_.string());
  ASSERT_TRUE(status) << status.error().message;
  EXPECT_EQ(status->skipped_lines, 7u);
  ASSERT_EQ(status->machines.size(), 3u);
  EXPECT_EQ(status->machines[0].machine, "52-54-00-00-00-01");
  EXPECT_EQ(status->machines[1].result, "error");  // the newest line of 02, not the rotated one
  EXPECT_EQ(status->machines[2].message, "old");   // 09 reported only before the rotation

  const std::string table = format_status_table(*status);
  EXPECT_EQ(table,
            "MACHINE            ADDRESS          LAST REPORT (UTC)     RESULT   DISK HOLDS    KEY      MESSAGE\n"
            "52-54-00-00-00-01  10.0.0.9         2026-09-01T08:00:00Z  ok       v3            none     brought to v3\n"
            "52-54-00-00-00-02  10.0.0.9         2026-09-01T08:00:00Z  error    -             none     no disk matches [31m\n"
            "52-54-00-00-00-09  10.0.0.9         2026-08-01T00:00:00Z  ok       v1            none     old\n"
            "(7 lines of the log skipped: not a report line)\n");

  const auto json = nlohmann::json::parse(format_status_json(*status));
  EXPECT_EQ(json["skipped_lines"], 7);
  ASSERT_EQ(json["machines"].size(), 3u);
  EXPECT_EQ(json["machines"][1]["machine"], "52-54-00-00-00-02");
  EXPECT_EQ(json["machines"][1]["message"], "no disk\tmatches\x1b[31m");  // JSON keeps the text as it is
  EXPECT_EQ(json["machines"][1]["version"], "");
}

// ---- authenticated reports (machine_state.h, signature.h) ----

std::vector<uint8_t> test_key(uint8_t seed) { return std::vector<uint8_t>(32, seed); }
std::string hex_of(const std::vector<uint8_t>& key) {
  std::string hex;
  for (const uint8_t byte : key) hex += "0123456789abcdef"[byte >> 4], hex += "0123456789abcdef"[byte & 15];
  return hex;
}

// A report as troy update sends it with a machine state: counter, the key
// while the server may not have it, and ?hmac= over the exact body.
CgiRequest signed_post(nlohmann::json body, const std::vector<uint8_t>& key, uint64_t counter, bool with_key) {
  body["report_counter"] = counter;
  if (with_key) body["machine_key"] = hex_of(key);
  CgiRequest request = post(body.dump());
  request.query = "hmac=" + hmac_sha256_hex(key, request.body);
  return request;
}

size_t log_lines(const fs::path& log) {
  const std::string text = read_text(log);
  return static_cast<size_t>(std::count(text.begin(), text.end(), '\n'));
}

TEST_F(LabServer, AFirstSignedReportEnrollsItsKeyThenOnlyThatKeyIsAccepted) {
  publish_newest("v3");
  const auto key = test_key(1);
  CgiResponse response = report(signed_post(good_report(), key, 1, true));
  ASSERT_EQ(response.status, "200 OK") << response.body;
  EXPECT_TRUE(fs::exists(reports() / "keys" / kMachine));
  EXPECT_EQ(read_text(reports() / (kMachine + ".json")).find(hex_of(key)), std::string::npos);  // the key is not shown
  const std::string stored = read_text(reports() / (kMachine + ".json"));
  const std::string boot_state = read_text(reports() / (kMachine + ".boot"));

  // A stranger's report for this machine: unsigned, or signed with another key.
  nlohmann::json forged = good_report();
  forged["version"] = "v1";
  response = report(post(forged.dump()));
  EXPECT_EQ(response.status, "403 Forbidden");
  EXPECT_NE(response.body.find("unauthenticated"), std::string::npos) << response.body;
  response = report(signed_post(forged, test_key(2), 5, true));
  EXPECT_EQ(response.status, "403 Forbidden");
  EXPECT_NE(response.body.find("HMAC does not verify"), std::string::npos) << response.body;
  EXPECT_EQ(read_text(reports() / (kMachine + ".json")), stored);
  EXPECT_EQ(read_text(reports() / (kMachine + ".boot")), boot_state);
  EXPECT_EQ(log_lines(reports() / "log.jsonl"), 3u);  // one line per refusal
  auto status = status_rows(served_.string(), kNow);
  ASSERT_TRUE(status && status->machines.size() == 1);
  EXPECT_EQ(status->machines[0].result, "refused");
  EXPECT_EQ(status->machines[0].key, "CHANGED");  // another key signed a report: shown to the admin

  // The machine itself, next time: counter 2, no key.
  response = report(signed_post(good_report(), key, 2, false));
  EXPECT_EQ(response.status, "200 OK") << response.body;
  // The same request again (an answer lost): stored once; another body with counter 2: a replay.
  EXPECT_EQ(report(signed_post(good_report(), key, 2, false)).body, "report already stored\n");
  response = report(signed_post(forged, key, 2, false));
  EXPECT_EQ(response.status, "403 Forbidden");
  EXPECT_NE(response.body.find("replayed"), std::string::npos) << response.body;
}

// The reimage flag as troy lab reimage leaves it, set `age_seconds` before kNow.
fs::path set_reimage_flag(const fs::path& served, int64_t age_seconds) {
  const fs::path flag = served / "reimage" / kMachine;
  fs::create_directories(flag.parent_path());
  std::ofstream(flag) << "reimage\n";
  const timeval when{static_cast<time_t>(std::chrono::system_clock::to_time_t(kNow) - age_seconds), 0};
  const timeval times[2] = {when, when};
  EXPECT_EQ(::utimes(flag.c_str(), times), 0);
  return flag;
}

TEST_F(LabServer, AReimageFlagIsClearedByTheMachinesAuthenticatedOkReportAtTheNewestVersion) {
  publish_newest("v3");
  const auto key = test_key(3);
  ASSERT_EQ(report(signed_post(good_report(), key, 1, true)).status, "200 OK");  // key enrolled
  const fs::path flag = set_reimage_flag(served_, 60);

  // Kept: a report at an older version, an error, an unsigned (forged) one.
  nlohmann::json older = good_report();
  older["version"] = "v2";
  ASSERT_EQ(report(signed_post(older, key, 2, false)).status, "200 OK");
  nlohmann::json failed = good_report();
  failed["result"] = "error";
  ASSERT_EQ(report(signed_post(failed, key, 3, false)).status, "200 OK");
  report(post(good_report().dump()));
  EXPECT_TRUE(fs::exists(flag));

  // Kept: set after the report arrived (the admin asked again meanwhile).
  set_reimage_flag(served_, -60);
  ASSERT_EQ(report(signed_post(good_report(), key, 4, false)).status, "200 OK");
  EXPECT_TRUE(fs::exists(flag));

  // Cleared: the machine, by its key, ok at v3 after the flag was set.
  set_reimage_flag(served_, 60);
  ASSERT_EQ(report(signed_post(good_report(), key, 5, false)).status, "200 OK");
  EXPECT_FALSE(fs::exists(flag));
}

TEST_F(LabServer, AReimageFlagIsKeptWhenTheOkReportIsAFirstContact) {
  publish_newest("v3");
  const fs::path flag = set_reimage_flag(served_, 60);
  ASSERT_EQ(report(signed_post(good_report(), test_key(4), 1, true)).status, "200 OK");  // new-key: anyone's
  EXPECT_TRUE(fs::exists(flag));
}

TEST_F(LabServer, AForgedReportNeverSendsAKeyedMachineToItsLocalDisk) {
  publish_newest("v4");
  ASSERT_EQ(report(signed_post(good_report(), test_key(1), 1, true)).status, "200 OK");  // holds v3
  const std::string payload = boot(boot_request("mac=52-54-00-00-00-01")).body;
  EXPECT_NE(payload.find("initrd="), std::string::npos);
  nlohmann::json forged = good_report();
  forged["version"] = "v4";
  EXPECT_EQ(report(post(forged.dump())).status, "403 Forbidden");
  EXPECT_EQ(boot(boot_request("mac=52-54-00-00-00-01")).body, payload);
}

TEST_F(LabServer, ForgetAcceptsTheNextKeyAMachineSends) {
  ASSERT_EQ(report(signed_post(good_report(), test_key(1), 1, true)).status, "200 OK");
  EXPECT_EQ(report(signed_post(good_report(), test_key(2), 1, true)).status, "403 Forbidden");  // a new disk
  auto forgotten = forget_machine(served_.string(), "52:54:00:00:00:01");
  ASSERT_TRUE(forgotten) << forgotten.error().message;
  EXPECT_FALSE(fs::exists(reports() / "keys" / kMachine));
  EXPECT_FALSE(fs::exists(reports() / "keys" / (kMachine + ".changed")));
  // Signed without its key: the server asks for it (the machine sends it again).
  const CgiResponse without_key = report(signed_post(good_report(), test_key(2), 2, false));
  EXPECT_EQ(without_key.status, "403 Forbidden");
  EXPECT_NE(without_key.body.find("holds no key"), std::string::npos) << without_key.body;
  EXPECT_EQ(report(signed_post(good_report(), test_key(2), 2, true)).status, "200 OK");
  EXPECT_FALSE(forget_machine(served_.string(), "../../etc"));
}

TEST_F(LabServer, DamagedBootStateOrKeyRecordIsNeverTrusted) {
  publish_newest("v3");
  const std::string payload = boot(boot_request("mac=52-54-00-00-00-01")).body;
  for (const char* text : {"{}", "[1]", "{\"version\":\"v3\"}", "{\"result\":\"ok\",\"version\":\"v3\"}", "not json"}) {
    write_text(reports() / (kMachine + ".boot"), text);
    EXPECT_EQ(boot(boot_request("mac=52-54-00-00-00-01")).body, payload) << text;
  }
  write_text(reports() / "keys" / kMachine, "{\"key\":\"" + std::string(64, 'a') + "\"}");
  const CgiResponse response = report(post(good_report().dump()));
  EXPECT_EQ(response.status, "500 Internal Server Error");
  EXPECT_NE(response.body.find("not a key record"), std::string::npos) << response.body;
}

TEST_F(LabServer, RateLimitsEachAddress) {
  for (int i = 0; i < kReportBurst; ++i) ASSERT_EQ(report(post(good_report().dump())).status, "200 OK") << i;
  const CgiResponse limited = report(post(good_report().dump()));
  EXPECT_EQ(limited.status, "429 Too Many Requests");
  EXPECT_NE(limited.body.find("10.0.0.51"), std::string::npos) << limited.body;
  CgiRequest other = post(good_report().dump());
  other.remote_address = "10.0.0.52";
  EXPECT_EQ(report(other).status, "200 OK");
  const auto later = kNow + std::chrono::seconds(kReportRefillSeconds);
  EXPECT_EQ(handle_report(served_.string(), post(good_report().dump()), later).status, "200 OK");
  EXPECT_EQ(handle_report(served_.string(), post(good_report().dump()), later).status, "429 Too Many Requests");
}

TEST(LabServerMac, NormalizesToLowerCaseWithDashes) {
  EXPECT_EQ(normalize_mac("52:54:00:AB:CD:EF"), "52-54-00-ab-cd-ef");
  EXPECT_EQ(normalize_mac("52-54-00-ab-cd-ef"), "52-54-00-ab-cd-ef");
  EXPECT_FALSE(normalize_mac("52:54:00:ab:cd"));
  EXPECT_FALSE(normalize_mac("52.54.00.ab.cd.ef"));
  EXPECT_FALSE(normalize_mac("5254.00ab.cdef.."));
}

TEST(LabServerCgi, PrintsStatusAndContentTypeHeaders) {
  EXPECT_EQ(cgi_output(CgiResponse{"404 Not Found", "text/plain", "no\n"}),
            "Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nno\n");
}

nlohmann::json progress_report(int percent) {
  return {{"machine", "52:54:00:00:00:01"}, {"result", "progress"}, {"state", "applying"}, {"percent", percent},
          {"detail", "apply"}, {"version", "v2"}, {"message", "apply 42%"}, {"troy_report", 1}};
}

// Progress (issue 18): authenticated like a final report, noted in the
// machine's status record and on the page, never in the log or MACHINE.json;
// while it works the machine boots the payload, and the next final report
// at the newest version sends it to its local disk again.
TEST_F(LabServer, ProgressReportsUpdateTheStatusAndSendTheMachineToThePayload) {
  publish_newest("v3");
  const auto key = test_key(1);
  ASSERT_EQ(report(signed_post(good_report(), key, 1, true)).status, "200 OK");
  ASSERT_NE(boot(boot_request("mac=52-54-00-00-00-01")).body.find("booting its local disk"), std::string::npos);
  const size_t lines = log_lines(reports() / "log.jsonl");
  const std::string stored = read_text(reports() / (kMachine + ".json"));
  CgiResponse response = report(signed_post(progress_report(42), key, 2, false));
  ASSERT_EQ(response.status, "200 OK") << response.body;
  EXPECT_EQ(response.body, "progress noted\n");
  EXPECT_EQ(log_lines(reports() / "log.jsonl"), lines);
  EXPECT_EQ(read_text(reports() / (kMachine + ".json")), stored);
  EXPECT_NE(read_text(reports() / "status" / (kMachine + ".json")).find("\"percent\":42"), std::string::npos);
  // The page is rebuilt after the answer (troy lab report calls refresh_status_page).
  ASSERT_TRUE(std::filesystem::exists(reports() / "page.stale"));
  const auto refreshed = refresh_status_page(served_.string(), "", std::chrono::milliseconds(0));
  ASSERT_TRUE(refreshed) << refreshed.error().message;
  ASSERT_EQ(*refreshed, 1);
  EXPECT_NE(read_text(served_ / "status" / "index.html").find("<td class=\"progress\">42% apply</td>"),
            std::string::npos);
  EXPECT_NE(boot(boot_request("mac=52-54-00-00-00-01")).body.find("loading the boot payload"), std::string::npos);
  // Unsigned, replayed, or with a bad state or percent: refused.
  EXPECT_EQ(report(post(progress_report(50).dump())).status, "403 Forbidden");
  EXPECT_EQ(report(signed_post(progress_report(50), key, 2, false)).status, "403 Forbidden");
  nlohmann::json bad = progress_report(50);
  bad["state"] = "<b>done</b>";
  EXPECT_EQ(report(signed_post(bad, key, 3, false)).status, "400 Bad Request");
  bad = progress_report(101);
  EXPECT_EQ(report(signed_post(bad, key, 3, false)).status, "400 Bad Request");
  ASSERT_EQ(report(signed_post(good_report(), key, 3, false)).status, "200 OK");
  EXPECT_NE(boot(boot_request("mac=52-54-00-00-00-01")).body.find("booting its local disk"), std::string::npos);
}

// Progress has a budget of its own per address: a flood of it is cut at
// kProgressBurst, and a final report from the same address still passes.
TEST_F(LabServer, AProgressFloodIsLimitedWithoutTakingTheFinalReportsBudget) {
  publish_newest("v3");
  int accepted = 0, limited = 0;
  for (int i = 0; i < kProgressBurst + 10; i++) {
    const std::string status = report(post(progress_report(i % 100).dump())).status;
    accepted += status == "200 OK";
    limited += status == "429 Too Many Requests";
  }
  EXPECT_EQ(accepted, kProgressBurst);
  EXPECT_EQ(limited, 10);
  EXPECT_EQ(report(post(good_report().dump())).status, "200 OK");
  // One every kProgressRefillSeconds passes again.
  EXPECT_EQ(handle_report(served_.string(), post(progress_report(1).dump()),
                          kNow + std::chrono::seconds(kProgressRefillSeconds))
                .status,
            "200 OK");
}

}  // namespace
}  // namespace troy::cli
