// The lab's live status (issue 18): what each machine is doing, kept by the
// report handler (server.h) in one small record per machine, and shown as a
// static HTML page regenerated after every accepted report, as the table of
// `troy lab status` and as its --json. Files, under the served directory:
//
//   reports/status/MACHINE.json  the machine's record: state, percent, what it
//                                works on, version, address, last seen, last
//                                error, and its last kHistoryEntries state changes
//   status/index.html            the page (served at /status/; no script, it
//                                reloads itself every kPageRefreshSeconds)
//
// The page's rows: every machine of the hosts file (hosts.h) in its order,
// then every other machine that reported, by MAC. Everything a machine sent
// is untrusted: HTML-escaped on the page, control characters escaped in the
// table (printable(), text.h), exact in --json.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hosts.h"
#include "result.h"
#include "server.h"

namespace troy::cli {

inline constexpr size_t kHistoryEntries = 20;
inline constexpr size_t kMaxStatusRecordBytes = 64 << 10;
inline constexpr size_t kMaxDetailBytes = 128;
// A machine working (a progress state) that has said nothing for this long
// is shown as "stalled": it reports progress every 10 s.
inline constexpr int64_t kStalledSeconds = 180;
inline constexpr int kPageRefreshSeconds = 10;

// The states of a machine at work, as progress reports carry them.
bool is_progress_state(std::string_view state);
// The state a progress line's label ("download v3", "apply", "syncing",
// "check", "indexing") stands for: downloading, applying, syncing,
// verifying, merging, or checking.
std::string progress_state(std::string_view what);

// What an accepted report tells about its machine (server.h fills it).
struct ReportFacts {
  std::string machine;  // normalized MAC
  std::string address;
  std::string time;     // ISO UTC, when the server received it
  std::string state;    // a progress state (server.h), or "done" / "error" for a final report
  int percent = -1;     // progress reports: 0..100
  std::string detail;   // progress reports: what it works on ("apply", "download v3")
  std::string version;  // what the disk holds, as the machine says
  std::string message;
};

struct HistoryEntry {
  std::string time;
  std::string state;
  std::string version;
  std::string message;
};

// reports/status/MACHINE.json.
struct MachineRecord {
  std::string machine;
  std::string address;
  std::string state;
  int percent = -1;
  std::string detail;
  std::string version;
  std::string last_seen;
  std::string last_error;       // the message of the newest error report
  std::string last_error_time;
  std::vector<HistoryEntry> history;  // oldest first, at most kHistoryEntries
};

// The record after one more report: state and figures replaced, the history
// grown by an entry when the state changed (or a final report came), bounded.
MachineRecord updated_record(std::optional<MachineRecord> previous, const ReportFacts& report);
std::string encode_record(const MachineRecord& record);
// nullopt for anything that is not such a record (damaged, hostile).
std::optional<MachineRecord> decode_record(std::string_view text);

// Reads, updates and replaces (atomically) the machine's record. Called under
// the report handler's lock.
Result<void> note_report(const std::string& served, const ReportFacts& report);

// One row of the page and table.
struct MachineView {
  std::string machine;
  std::string seat;     // "" when the hosts file does not list it
  std::string note;
  std::string address;
  // never seen, checking, downloading, applying, syncing, verifying,
  // stalled, done (at the newest version), outdated (ok at an older one), error
  std::string state;
  std::string progress;  // "42% apply" while working, else ""
  std::string version;
  std::string last_seen;
  std::string last_error;
  std::string key;       // as `troy lab status` always said: none, new, ok, CHANGED
  std::vector<HistoryEntry> history;
  bool not_seen_since_publish = false;
};

struct LabOverview {
  std::string newest;     // the newest published version, "" when none
  std::string published;  // when the manifest was last written (ISO UTC), ""
  std::string generated;  // now, ISO UTC
  std::string hosts_note; // why the hosts file was not used, "" when it was (or is absent)
  std::vector<MachineView> machines;
  size_t skipped_lines = 0;  // of the report log (status_rows)
};

// Everything the page and table show. A bad hosts file is not an error
// here: the status is shown without seats and says why (hosts_note).
Result<LabOverview> lab_overview(const std::string& served, const std::string& hosts_path,
                                 std::chrono::system_clock::time_point now);
// The views from what lab_overview reads: hosts-file machines first, in its
// order, then the others by MAC; `published`: the manifest's time (0: none).
LabOverview build_overview(const Hosts& hosts, const std::vector<MachineRecord>& records, const LabStatus& log,
                           const std::string& newest, int64_t published, int64_t now);

// "38 of 40 at v3, 1 in progress, 1 error" (+ ", 2 not seen since the last publish").
std::string summary_line(const LabOverview& overview);
std::string format_overview_table(const LabOverview& overview);
std::string format_overview_json(const LabOverview& overview);
std::string status_page_html(const LabOverview& overview);
// Writes SERVED/status/index.html (replaced in one step).
Result<void> publish_status_page(const std::string& served, const std::string& hosts_path,
                                 std::chrono::system_clock::time_point now);

// The page follows the reports without each report rebuilding it: a lab
// boots 40-500 machines at once, each sends a progress and a final report,
// and a rebuild reads every machine's record, so one rebuild per report was
// quadratic and held the reports' lock. Instead an accepted report marks the
// page stale (SERVED/reports/page.stale, under the reports' lock), answers
// the machine, and only then calls refresh_status_page. One process at a time
// rebuilds (SERVED/reports/page.lock); it renames the mark to
// page.rebuilding until the page is written, so a rebuild cut short (killed,
// power lost) is done by the next refresh. The others return at once,
// because the one rebuilding looks for the mark again after each rebuild and
// after letting the lock go. Rebuilds start at least `min_interval` after the
// page's last one, so a burst of reports costs one rebuild per interval, and
// the page shows the last report of a burst within about one interval.
Result<void> mark_status_page_stale(const std::string& served);
// How many rebuilds this call made (0: the page was not stale, or another
// process is rebuilding it and will see the mark).
Result<int> refresh_status_page(const std::string& served, const std::string& hosts_path,
                                std::chrono::milliseconds min_interval = std::chrono::seconds(1));

// Text as HTML: & < > " ' escaped, control characters and bad UTF-8 as
// printable() writes them.
std::string html_text(std::string_view text);

}  // namespace troy::cli
