// The lab's live status (tools/lab/status_page.h): a machine's record over
// progress and final reports (bounded history), the views with seats from
// the hosts file, stalled and unseen machines, the summary line, and hostile
// text from reports escaped on the page and in the table.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <ctime>

#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "status_page.h"

namespace troy::cli {
namespace {

const std::string kOne = "52-54-00-00-00-01";
const std::string kTwo = "52-54-00-00-00-02";
const std::string kThree = "52-54-00-00-00-03";
constexpr int64_t kNow = 1788249600;  // 2026-09-01T08:00:00Z

ReportFacts facts(const std::string& machine, const std::string& state, const std::string& version,
                  const std::string& time = "2026-09-01T07:59:00Z", int percent = -1,
                  const std::string& message = "") {
  return ReportFacts{machine, "10.0.0.1", time, state, percent, percent >= 0 ? "apply" : "", version, message};
}

TEST(StatusPage, ProgressStatesFromProgressLabels) {
  EXPECT_EQ(progress_state("download v3"), "downloading");
  EXPECT_EQ(progress_state("apply"), "applying");
  EXPECT_EQ(progress_state("syncing"), "syncing");
  EXPECT_EQ(progress_state("verify"), "verifying");
  EXPECT_EQ(progress_state("check"), "checking");
  EXPECT_EQ(progress_state("indexing"), "checking");
  EXPECT_TRUE(is_progress_state("applying"));
  EXPECT_FALSE(is_progress_state("done"));
  EXPECT_FALSE(is_progress_state("<script>"));
}

TEST(StatusPage, RecordKeepsStateChangesAndBoundsItsHistory) {
  auto record = updated_record(std::nullopt, facts(kOne, "checking", "", "t1", 5));
  record = updated_record(record, facts(kOne, "applying", "v1", "t2", 10));
  record = updated_record(record, facts(kOne, "applying", "v1", "t3", 60));  // same state: no entry
  EXPECT_EQ(record.history.size(), 2u);
  EXPECT_EQ(record.percent, 60);
  EXPECT_EQ(record.last_seen, "t3");
  record = updated_record(record, facts(kOne, "error", "v1", "t4", -1, "disk full"));
  EXPECT_EQ(record.last_error, "disk full");
  record = updated_record(record, facts(kOne, "done", "v3", "t5"));
  EXPECT_EQ(record.last_error, "disk full");  // the last error stays after a good report
  EXPECT_EQ(record.state, "done");
  for (int i = 0; i < 50; i++) record = updated_record(record, facts(kOne, "done", "v3", fmt::format("t{}", i)));
  EXPECT_EQ(record.history.size(), kHistoryEntries);
  EXPECT_EQ(record.history.back().time, "t49");
  // Through the file format and back.
  const auto decoded = decode_record(encode_record(record));
  ASSERT_TRUE(decoded);
  EXPECT_EQ(decoded->history.size(), kHistoryEntries);
  EXPECT_EQ(decoded->last_error, "disk full");
  EXPECT_EQ(decoded->version, "v3");
}

TEST(StatusPage, DamagedOrHostileRecordsAreNotRecords) {
  EXPECT_FALSE(decode_record(""));
  EXPECT_FALSE(decode_record("[1,2]"));
  EXPECT_FALSE(decode_record(R"({"machine":"x","state":"done"})"));
  EXPECT_FALSE(decode_record(R"({"machine":"52-54-00-00-00-01","state":"<b>pwned</b>"})"));
  const auto odd = decode_record(R"({"machine":"52-54-00-00-00-01","state":"applying","percent":900,"history":[1,{}]})");
  ASSERT_TRUE(odd);
  EXPECT_EQ(odd->percent, -1);
  EXPECT_EQ(odd->history.size(), 1u);
}

LabOverview sample_overview() {
  Hosts hosts = *parse_hosts("52:54:00:00:00:02 R12-02 window\n52:54:00:00:00:09 R12-09\n52:54:00:00:00:01 R12-01\n",
                             "hosts");
  std::vector<MachineRecord> records;
  records.push_back(updated_record(std::nullopt, facts(kOne, "done", "v3")));
  records.push_back(updated_record(std::nullopt, facts(kTwo, "applying", "v2", "2026-09-01T07:59:50Z", 42)));
  records.push_back(updated_record(
      std::nullopt, facts(kThree, "error", "v2", "2026-09-01T07:00:00Z", -1, "<script>alert(1)</script>\x1b[2J")));
  LabStatus log;
  StatusRow row;
  row.machine = kOne;
  row.key = "ok";
  log.machines.push_back(row);
  // Published at 07:30: machine 3 (07:00) and 9 (never) were not seen since.
  return build_overview(hosts, records, log, "v3", kNow - 1800, kNow);
}

TEST(StatusPage, RowsFollowTheHostsFileThenTheOthersWithTheirStates) {
  const LabOverview overview = sample_overview();
  ASSERT_EQ(overview.machines.size(), 4u);
  EXPECT_EQ(overview.machines[0].machine, kTwo);
  EXPECT_EQ(overview.machines[0].seat, "R12-02");
  EXPECT_EQ(overview.machines[0].state, "applying");
  EXPECT_EQ(overview.machines[0].progress, "42% apply");
  EXPECT_EQ(overview.machines[1].machine, "52-54-00-00-00-09");
  EXPECT_EQ(overview.machines[1].state, "never seen");
  EXPECT_TRUE(overview.machines[1].not_seen_since_publish);
  EXPECT_EQ(overview.machines[2].state, "done");
  EXPECT_EQ(overview.machines[2].key, "ok");
  EXPECT_FALSE(overview.machines[2].not_seen_since_publish);
  EXPECT_EQ(overview.machines[3].machine, kThree);  // not in the hosts file: last
  EXPECT_EQ(overview.machines[3].seat, "");
  EXPECT_TRUE(overview.machines[3].not_seen_since_publish);
  EXPECT_EQ(summary_line(overview), "1 of 4 at v3, 1 in progress, 1 error, 2 not seen since the last publish");
}

TEST(StatusPage, SilentWorkIsStalledAndAnOlderVersionIsOutdated) {
  std::vector<MachineRecord> records;
  records.push_back(updated_record(std::nullopt, facts(kOne, "syncing", "", "2026-09-01T07:50:00Z", 10)));
  records.push_back(updated_record(std::nullopt, facts(kTwo, "done", "v2")));
  const LabOverview overview = build_overview(Hosts{}, records, LabStatus{}, "v3", 0, kNow);
  EXPECT_EQ(overview.machines[0].state, "stalled");
  EXPECT_EQ(overview.machines[1].state, "outdated");
  EXPECT_EQ(summary_line(overview), "0 of 2 at v3, 0 in progress, 0 errors, 1 stalled");
  EXPECT_EQ(summary_line(build_overview(Hosts{}, {}, LabStatus{}, "", 0, kNow)),
            "0 machines, no version published, 0 in progress, 0 errors");
}

TEST(StatusPage, HostileTextIsEscapedOnThePageAndInTheTable) {
  const LabOverview overview = sample_overview();
  const std::string page = status_page_html(overview);
  EXPECT_EQ(page.find("<script>"), std::string::npos);
  EXPECT_NE(page.find("&lt;script&gt;alert(1)&lt;/script&gt;\\x1b[2J"), std::string::npos);
  EXPECT_EQ(page.find('\x1b'), std::string::npos);
  EXPECT_NE(page.find("<p id=\"summary\">1 of 4 at v3, 1 in progress, 1 error, 2 not seen since the last publish</p>"),
            std::string::npos);
  EXPECT_NE(page.find("<tr id=\"m-52-54-00-00-00-02\" class=\"state-applying\"><td class=\"seat\" title=\"window\">"
                      "R12-02</td>"),
            std::string::npos);
  EXPECT_EQ(html_text("a&b\"c'<>"), "a&amp;b&quot;c&#39;&lt;&gt;");
  EXPECT_EQ(html_text("\xff\xfe"), "\\xff\\xfe");
  const std::string table = format_overview_table(overview);
  EXPECT_EQ(table.find('\x1b'), std::string::npos);
  EXPECT_NE(table.find("52-54-00-00-00-02  R12-02      10.0.0.1         applying     v2            -        42% apply"),
            std::string::npos)
      << table;
  EXPECT_NE(table.find("never *"), std::string::npos);
  EXPECT_NE(table.find("\n1 of 4 at v3, 1 in progress, 1 error, 2 not seen since the last publish\n"),
            std::string::npos);
  const std::string json = format_overview_json(overview);
  EXPECT_NE(json.find("\"summary\": \"1 of 4 at v3"), std::string::npos);
  EXPECT_NE(json.find("\\u001b[2J"), std::string::npos);  // exact in JSON
}

TEST(StatusPage, PublishWritesThePageFromRecordsAndAHostsFile) {
  namespace fs = std::filesystem;
  const fs::path served = fs::temp_directory_path() / "troy_status_page_test";
  fs::remove_all(served);
  fs::create_directories(served / "reports");
  const auto now = std::chrono::system_clock::from_time_t(kNow);
  ASSERT_TRUE(note_report(served.string(), facts(kOne, "applying", "", "2026-09-01T07:59:59Z", 30)));
  std::ofstream(served / "hosts") << "52:54:00:00:00:01 R1\n";
  ASSERT_TRUE(publish_status_page(served.string(), (served / "hosts").string(), now));
  std::ifstream in(served / "status" / "index.html");
  const std::string page((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(page.find("R1</td><td class=\"mac\">52-54-00-00-00-01</td><td class=\"state\">applying</td>"),
            std::string::npos)
      << page;
  // A bad hosts file: the page is made without seats and says why.
  std::ofstream(served / "hosts") << "52:54:00:00:00:01\n";
  const auto overview = lab_overview(served.string(), (served / "hosts").string(), now);
  ASSERT_TRUE(overview);
  EXPECT_EQ(overview->hosts_note, (served / "hosts").string() + ":1: SEAT: missing (a line is MAC SEAT [NOTE])");
  EXPECT_EQ(overview->machines.size(), 1u);
  // A hosts file asked for by name must exist; the default may be absent.
  EXPECT_NE(lab_overview(served.string(), (served / "absent").string(), now)->hosts_note, "");
  fs::remove_all(served);
}

int rebuilds(const Result<int>& refreshed) {
  EXPECT_TRUE(refreshed) << (refreshed ? "" : refreshed.error().message);
  return refreshed ? *refreshed : -1;
}

std::string file_text(const std::filesystem::path& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// A burst of reports rebuilds the page once per interval, not once per
// report, and the last report of the burst is on the page in the end.
TEST(StatusPage, RefreshRebuildsOnlyAStalePageAndOneProcessAtATime) {
  namespace fs = std::filesystem;
  const fs::path served = fs::temp_directory_path() / "troy_status_refresh_test";
  fs::remove_all(served);
  fs::create_directories(served / "reports");
  const std::string hosts;  // no seats
  const auto none = std::chrono::milliseconds(0);
  // Not stale: nothing is written.
  ASSERT_EQ(rebuilds(refresh_status_page(served.string(), hosts, none)), 0);
  EXPECT_FALSE(fs::exists(served / "status" / "index.html"));
  // Stale: one rebuild, and the mark is gone.
  ASSERT_TRUE(note_report(served.string(), facts(kOne, "applying", "", "2026-09-01T07:59:59Z", 30)));
  ASSERT_TRUE(mark_status_page_stale(served.string()));
  ASSERT_EQ(rebuilds(refresh_status_page(served.string(), hosts, none)), 1);
  EXPECT_FALSE(fs::exists(served / "reports" / "page.stale"));
  EXPECT_NE(file_text(served / "status" / "index.html").find("2026-09-01T07:59:59Z"), std::string::npos);
  // Another process rebuilding (it holds the lock): the call returns at
  // once and leaves the mark for the holder, which looks again after each
  // rebuild and after letting the lock go.
  ASSERT_TRUE(note_report(served.string(), facts(kOne, "syncing", "", "2026-09-01T08:00:09Z", 60)));
  ASSERT_TRUE(mark_status_page_stale(served.string()));
  {
    const int holder = ::open((served / "reports" / "page.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    ASSERT_GE(holder, 0);
    ASSERT_EQ(::flock(holder, LOCK_EX), 0);
    EXPECT_EQ(rebuilds(refresh_status_page(served.string(), hosts, none)), 0);
    EXPECT_TRUE(fs::exists(served / "reports" / "page.stale"));
    EXPECT_EQ(file_text(served / "status" / "index.html").find("2026-09-01T08:00:09Z"), std::string::npos);
    ::close(holder);
  }
  ASSERT_EQ(rebuilds(refresh_status_page(served.string(), hosts, none)), 1);
  EXPECT_NE(file_text(served / "status" / "index.html").find("2026-09-01T08:00:09Z"), std::string::npos);
  // A rebuild cut short (killed after taking the mark) is done by the next refresh.
  ASSERT_TRUE(note_report(served.string(), facts(kOne, "verifying", "", "2026-09-01T08:00:19Z", 90)));
  std::ofstream(served / "reports" / "page.rebuilding").close();
  ASSERT_EQ(rebuilds(refresh_status_page(served.string(), hosts, none)), 1);
  EXPECT_FALSE(fs::exists(served / "reports" / "page.rebuilding"));
  EXPECT_NE(file_text(served / "status" / "index.html").find("2026-09-01T08:00:19Z"), std::string::npos);
  // The interval: a page written less than it ago waits for it, and a page
  // dated in the future (a clock set back) waits one interval, not forever.
  ASSERT_TRUE(mark_status_page_stale(served.string()));
  const timespec future[2] = {{::time(nullptr) + 3600, 0}, {::time(nullptr) + 3600, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, (served / "status" / "index.html").c_str(), future, 0), 0);
  const auto started = std::chrono::steady_clock::now();
  ASSERT_EQ(rebuilds(refresh_status_page(served.string(), hosts, std::chrono::milliseconds(300))), 1);
  const auto waited = std::chrono::steady_clock::now() - started;
  EXPECT_GE(waited, std::chrono::milliseconds(300));
  EXPECT_LT(waited, std::chrono::seconds(30));
  fs::remove_all(served);
}

}  // namespace
}  // namespace troy::cli
