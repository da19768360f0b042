#include "status_page.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <map>
#include <set>
#include <span>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "file_descriptor.h"
#include "files.h"
#include "manifest.h"
#include "output.h"
#include "record_text.h"
#include "server.h"
#include "text.h"

namespace troy::cli {
namespace {

using Json = nlohmann::json;
using OrderedJson = nlohmann::ordered_json;

// A history entry's message is cut here: 20 of them stay small.
constexpr size_t kMaxHistoryMessageBytes = 512;

bool is_final_state(std::string_view state) { return state == "done" || state == "error"; }

std::string cut(std::string text, size_t bytes) {
  if (text.size() > bytes) text.resize(bytes);
  return text;
}

std::string record_path(const std::string& served, const std::string& machine) {
  return fmt::format("{}/reports/status/{}.json", served, machine);
}

Result<void> make_folder(const std::string& path, mode_t mode) {
  if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST)
    return Error{fmt::format("{}: cannot create the folder: {}", path, std::strerror(errno))};
  return success();
}

Result<void> replace_file(const std::string& path, const std::string& text) {
  TROY_ASSIGN(out, OutputFile::create(path, true));
  TROY_TRY(out.write_at(0, std::as_bytes(std::span(text))));
  return out.commit();
}

// A string member, "" when missing or not a string.
std::string member(const Json& object, const char* name) {
  const auto field = object.find(name);
  return field != object.end() && field->is_string() ? field->get<std::string>() : std::string();
}

std::vector<MachineRecord> read_records(const std::string& served) {
  std::vector<MachineRecord> records;
  const std::string folder = served + "/reports/status";
  DIR* directory = ::opendir(folder.c_str());
  if (!directory) return records;
  std::vector<std::string> names;
  while (const dirent* entry = ::readdir(directory)) {
    const std::string_view name = entry->d_name;
    if (name.size() == 22 && name.ends_with(".json") && normalize_mac(name.substr(0, 17))) names.emplace_back(name);
  }
  ::closedir(directory);
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    auto text = read_small_file(folder + "/" + name, kMaxStatusRecordBytes, "a machine's status record");
    if (!text) continue;  // unreadable: the machine's next report rewrites it
    auto record = decode_record(*text);
    if (record && record->machine == name.substr(0, 17)) records.push_back(std::move(*record));
  }
  return records;
}

// The newest version of SERVED/manifest and when it was written (0: none).
std::pair<std::string, int64_t> published_version(const std::string& served) {
  const std::string path = served + "/manifest";
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return {"", 0};
  auto text = read_manifest_file(path);
  if (!text) return {"", 0};
  auto manifest = parse_manifest(*text, path);
  if (!manifest) return {"", 0};
  return {manifest->versions.back().name, static_cast<int64_t>(st.st_mtime)};
}

// ---- views ----

std::string view_state(const std::string& state, const std::string& version, const std::string& newest,
                       int64_t silent_seconds) {
  if (is_progress_state(state)) return silent_seconds > kStalledSeconds ? "stalled" : state;
  if (state == "done") return newest.empty() || version == newest ? "done" : "outdated";
  return state;
}

MachineView view_of_record(const MachineRecord& record, const std::string& newest, int64_t now) {
  MachineView view;
  view.machine = record.machine;
  view.address = record.address;
  const auto seen = parse_utc_time(record.last_seen);
  view.state = view_state(record.state, record.version, newest, seen ? now - *seen : 0);
  if (is_progress_state(record.state) && record.percent >= 0)
    view.progress = fmt::format("{}% {}", record.percent, record.detail);
  view.version = record.version;
  view.last_seen = record.last_seen;
  view.last_error = record.last_error;
  view.history = record.history;
  return view;
}

// A machine known only from the report log (it reported before this troy
// kept records, or only refused reports came under its name).
MachineView view_of_log_row(const StatusRow& row, const std::string& newest) {
  MachineView view;
  view.machine = row.machine;
  view.address = row.address;
  const std::string state = row.result == "ok" ? "done" : row.result;
  view.state = view_state(state == "error" || state == "done" ? state : "refused", row.version, newest, 0);
  view.version = row.result == "refused" ? "" : row.version;
  view.last_seen = row.time;
  if (row.result == "error") view.last_error = row.message;
  return view;
}

const char* plural(size_t count, const char* one, const char* many) { return count == 1 ? one : many; }

std::string flag_mark(const MachineView& view) { return view.not_seen_since_publish ? " *" : ""; }

std::string table_line(std::string_view machine, std::string_view seat, std::string_view address,
                       std::string_view state, std::string_view version, std::string_view key,
                       std::string_view progress, std::string_view seen, std::string_view error) {
  std::string line = fmt::format("{:<17}  {:<10}  {:<15}  {:<11}  {:<12}  {:<7}  {:<16}  {:<22}  {}", machine, seat,
                                 address, state, version, key, progress, seen, error);
  line.erase(line.find_last_not_of(' ') + 1);
  return line + "\n";
}

std::string or_dash(const std::string& text) { return text.empty() ? "-" : printable(text); }

}  // namespace

bool is_progress_state(std::string_view state) {
  return state == "checking" || state == "downloading" || state == "applying" || state == "syncing" ||
         state == "verifying" || state == "merging";
}

std::string progress_state(std::string_view what) {
  if (what.starts_with("download")) return "downloading";
  if (what.starts_with("apply")) return "applying";
  if (what.starts_with("sync")) return "syncing";
  if (what.starts_with("verify")) return "verifying";
  if (what.starts_with("merg")) return "merging";
  return "checking";  // check, checking, indexing, fingerprint and index downloads
}

MachineRecord updated_record(std::optional<MachineRecord> previous, const ReportFacts& report) {
  MachineRecord record = previous.value_or(MachineRecord{});
  const bool changed = !previous || record.state != report.state || is_final_state(report.state);
  record.machine = report.machine;
  record.address = report.address;
  record.state = report.state;
  record.percent = report.percent;
  record.detail = report.detail;
  record.version = report.version;
  record.last_seen = report.time;
  if (report.state == "error") {
    record.last_error = report.message;
    record.last_error_time = report.time;
  }
  if (changed) {
    record.history.push_back(
        HistoryEntry{report.time, report.state, report.version, cut(report.message, kMaxHistoryMessageBytes)});
    if (record.history.size() > kHistoryEntries)
      record.history.erase(record.history.begin(), record.history.end() - kHistoryEntries);
  }
  return record;
}

std::string encode_record(const MachineRecord& record) {
  OrderedJson out;
  out["machine"] = record.machine;
  out["address"] = record.address;
  out["state"] = record.state;
  out["percent"] = record.percent;
  out["detail"] = record.detail;
  out["version"] = record.version;
  out["last_seen"] = record.last_seen;
  out["last_error"] = record.last_error;
  out["last_error_time"] = record.last_error_time;
  out["history"] = OrderedJson::array();
  for (const HistoryEntry& entry : record.history)
    out["history"].push_back({{"time", entry.time}, {"state", entry.state}, {"version", entry.version},
                              {"message", entry.message}});
  return dump_json(out, -1) + "\n";
}

std::optional<MachineRecord> decode_record(std::string_view text) {
  const Json in = Json::parse(text, nullptr, false);
  if (!in.is_object()) return std::nullopt;
  MachineRecord record;
  record.machine = member(in, "machine");
  record.address = member(in, "address");
  record.state = member(in, "state");
  record.detail = member(in, "detail");
  record.version = member(in, "version");
  record.last_seen = member(in, "last_seen");
  record.last_error = member(in, "last_error");
  record.last_error_time = member(in, "last_error_time");
  const auto percent = in.find("percent");
  if (percent != in.end() && percent->is_number_integer()) {
    const int64_t value = percent->get<int64_t>();
    record.percent = value >= 0 && value <= 100 ? static_cast<int>(value) : -1;
  }
  if (!normalize_mac(record.machine) || !(is_progress_state(record.state) || is_final_state(record.state)))
    return std::nullopt;
  const auto history = in.find("history");
  if (history != in.end() && history->is_array()) {
    for (const Json& entry : *history) {
      if (!entry.is_object()) continue;
      record.history.push_back(
          HistoryEntry{member(entry, "time"), member(entry, "state"), member(entry, "version"), member(entry, "message")});
    }
    if (record.history.size() > kHistoryEntries)
      record.history.erase(record.history.begin(), record.history.end() - kHistoryEntries);
  }
  return record;
}

Result<void> note_report(const std::string& served, const ReportFacts& report) {
  TROY_TRY(make_folder(served + "/reports/status", 0755));
  const std::string path = record_path(served, report.machine);
  std::optional<MachineRecord> previous;
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0)
    if (auto text = read_small_file(path, kMaxStatusRecordBytes, "a machine's status record"))
      previous = decode_record(*text);  // a damaged record is started again
  return replace_file(path, encode_record(updated_record(std::move(previous), report)));
}

LabOverview build_overview(const Hosts& hosts, const std::vector<MachineRecord>& records, const LabStatus& log,
                           const std::string& newest, int64_t published, int64_t now) {
  LabOverview overview;
  overview.newest = newest;
  overview.skipped_lines = log.skipped_lines;
  if (published > 0) overview.published = iso_utc(std::chrono::system_clock::from_time_t(published));
  overview.generated = iso_utc(std::chrono::system_clock::from_time_t(now));
  std::map<std::string, MachineView> seen;
  for (const StatusRow& row : log.machines) {
    MachineView view = view_of_log_row(row, newest);
    view.key = row.key;
    seen[row.machine] = std::move(view);
  }
  for (const MachineRecord& record : records) {
    MachineView view = view_of_record(record, newest, now);
    const auto old = seen.find(record.machine);
    view.key = old != seen.end() ? old->second.key : "";
    seen[record.machine] = std::move(view);
  }
  const auto flag = [published](MachineView& view) {
    const auto when = parse_utc_time(view.last_seen);
    view.not_seen_since_publish = published > 0 && (!when || *when < published);
  };
  for (const HostEntry& host : hosts.entries) {
    auto found = seen.find(host.machine);
    MachineView view;
    if (found != seen.end()) {
      view = std::move(found->second);
      seen.erase(found);
    } else {
      view.machine = host.machine;
      view.state = "never seen";
    }
    view.seat = host.seat;
    view.note = host.note;
    flag(view);
    overview.machines.push_back(std::move(view));
  }
  for (auto& [machine, view] : seen) {
    flag(view);
    overview.machines.push_back(std::move(view));
  }
  return overview;
}

Result<LabOverview> lab_overview(const std::string& served, const std::string& hosts_path,
                                 std::chrono::system_clock::time_point now) {
  Hosts hosts;
  std::string hosts_note;
  if (!hosts_path.empty()) {
    auto read = read_hosts(hosts_path, hosts_path == kDefaultHostsPath);  // a file asked for must exist
    if (read) hosts = std::move(*read);
    else hosts_note = read.error().message;
  }
  TROY_ASSIGN(log, status_rows(served, now));
  const auto [newest, published] = published_version(served);
  LabOverview overview = build_overview(hosts, read_records(served), log, newest, published, epoch_seconds(now));
  overview.hosts_note = hosts_note;
  return overview;
}

std::string summary_line(const LabOverview& overview) {
  size_t at_newest = 0, working = 0, errors = 0, stalled = 0, unseen = 0;
  for (const MachineView& view : overview.machines) {
    at_newest += view.state == "done" && !overview.newest.empty() && view.version == overview.newest;
    working += is_progress_state(view.state);
    errors += view.state == "error";
    stalled += view.state == "stalled";
    unseen += view.not_seen_since_publish;
  }
  const size_t total = overview.machines.size();
  std::string line = overview.newest.empty()
                         ? fmt::format("{} {}, no version published", total, plural(total, "machine", "machines"))
                         : fmt::format("{} of {} at {}", at_newest, total, overview.newest);
  line += fmt::format(", {} in progress, {} {}", working, errors, plural(errors, "error", "errors"));
  if (stalled > 0) line += fmt::format(", {} stalled", stalled);
  if (unseen > 0) line += fmt::format(", {} not seen since the last publish", unseen);
  return line;
}

std::string format_overview_table(const LabOverview& overview) {
  std::string text;
  if (!overview.hosts_note.empty()) text += fmt::format("hosts file not used: {}\n", printable(overview.hosts_note));
  if (overview.machines.empty()) {
    text += "no machine has reported yet\n";
  } else {
    text += table_line("MACHINE", "SEAT", "ADDRESS", "STATE", "VERSION", "KEY", "PROGRESS", "LAST SEEN (UTC)",
                       "LAST ERROR");
    for (const MachineView& view : overview.machines)
      text += table_line(view.machine, or_dash(view.seat), or_dash(view.address), view.state, or_dash(view.version),
                         or_dash(view.key), or_dash(view.progress),
                         (view.last_seen.empty() ? "never" : printable(view.last_seen)) + flag_mark(view),
                         printable(view.last_error));
    if (std::any_of(overview.machines.begin(), overview.machines.end(),
                    [](const MachineView& view) { return view.not_seen_since_publish; }))
      text += fmt::format("* not seen since the last publish ({})\n", overview.published);
  }
  text += summary_line(overview) + "\n";
  if (overview.skipped_lines > 0)
    text += fmt::format("({} {} of the log skipped: not a report line)\n", overview.skipped_lines,
                        plural(overview.skipped_lines, "line", "lines"));
  return text;
}

std::string format_overview_json(const LabOverview& overview) {
  OrderedJson out;
  out["summary"] = summary_line(overview);
  out["newest"] = overview.newest;
  out["published"] = overview.published;
  out["generated"] = overview.generated;
  out["hosts_note"] = overview.hosts_note;
  out["machines"] = OrderedJson::array();
  for (const MachineView& view : overview.machines) {
    OrderedJson machine;
    machine["machine"] = view.machine;
    machine["seat"] = view.seat;
    machine["note"] = view.note;
    machine["address"] = view.address;
    machine["state"] = view.state;
    machine["progress"] = view.progress;
    machine["version"] = view.version;
    machine["key"] = view.key;
    machine["last_seen"] = view.last_seen;
    machine["not_seen_since_publish"] = view.not_seen_since_publish;
    machine["last_error"] = view.last_error;
    machine["history"] = OrderedJson::array();
    for (const HistoryEntry& entry : view.history)
      machine["history"].push_back({{"time", entry.time}, {"state", entry.state}, {"version", entry.version},
                                    {"message", entry.message}});
    out["machines"].push_back(std::move(machine));
  }
  out["skipped_lines"] = overview.skipped_lines;
  return dump_json(out, 2) + "\n";
}

std::string html_text(std::string_view text) {
  std::string out;
  for (const char c : printable(text)) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string status_page_html(const LabOverview& overview) {
  std::string page = fmt::format(
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
      "<meta http-equiv=\"refresh\" content=\"{}\">\n<title>Troy lab status</title>\n"
      "<style>body{{font-family:sans-serif}}table{{border-collapse:collapse}}td,th{{border:1px solid #aaa;"
      "padding:2px 6px;vertical-align:top;text-align:left}}.state-error td.state,.state-stalled td.state{{"
      "background:#fcc}}.state-done td.state{{background:#cfc}}.unseen td.seen{{background:#fe9}}"
      "ol{{margin:0;padding-left:1.2em;font-size:small}}</style></head>\n<body>\n<h1>Troy lab status</h1>\n"
      "<p id=\"summary\">{}</p>\n<p id=\"published\">newest version: {}; published {}; page made {}</p>\n",
      kPageRefreshSeconds, html_text(summary_line(overview)), html_text(overview.newest.empty() ? "none" : overview.newest),
      html_text(overview.published.empty() ? "never" : overview.published), html_text(overview.generated));
  if (!overview.hosts_note.empty())
    page += fmt::format("<p id=\"hosts-note\">hosts file not used: {}</p>\n", html_text(overview.hosts_note));
  page +=
      "<table id=\"machines\">\n<thead><tr><th>Seat</th><th>MAC</th><th>State</th><th>Version</th><th>Progress</th>"
      "<th>Last seen (UTC)</th><th>Last error</th><th>Address</th><th>Key</th><th>History</th></tr></thead>\n<tbody>\n";
  for (const MachineView& view : overview.machines) {
    std::string history;
    for (auto entry = view.history.rbegin(); entry != view.history.rend(); ++entry)
      history += fmt::format("<li>{} {} {} {}</li>", html_text(entry->time), html_text(entry->state),
                             html_text(entry->version), html_text(entry->message));
    const std::string seen = view.last_seen.empty() ? "never" : view.last_seen;
    page += fmt::format(
        "<tr id=\"m-{}\" class=\"state-{}{}\"><td class=\"seat\" title=\"{}\">{}</td><td class=\"mac\">{}</td>"
        "<td class=\"state\">{}</td><td class=\"version\">{}</td><td class=\"progress\">{}</td><td class=\"seen\">{}{}"
        "</td><td class=\"error\">{}</td><td class=\"address\">{}</td><td class=\"key\">{}</td><td class=\"history\">"
        "<ol>{}</ol></td></tr>\n",
        html_text(view.machine), html_text(view.state == "never seen" ? "never" : view.state),
        view.not_seen_since_publish ? " unseen" : "", html_text(view.note), html_text(view.seat),
        html_text(view.machine), html_text(view.state), html_text(view.version), html_text(view.progress),
        html_text(seen), view.not_seen_since_publish ? " (not seen since the last publish)" : "",
        html_text(view.last_error), html_text(view.address), html_text(view.key), history);
  }
  page += "</tbody></table>\n</body></html>\n";
  return page;
}

Result<void> publish_status_page(const std::string& served, const std::string& hosts_path,
                                 std::chrono::system_clock::time_point now) {
  TROY_ASSIGN(overview, lab_overview(served, hosts_path, now));
  TROY_TRY(make_folder(served + "/status", 0755));
  return replace_file(served + "/status/index.html", status_page_html(overview));
}

namespace {

std::string stale_mark(const std::string& served) { return served + "/reports/page.stale"; }
// The mark taken by a rebuild, removed once the page is written: a rebuild
// cut short (killed, power lost) leaves it, and the next refresh rebuilds.
std::string taken_mark(const std::string& served) { return served + "/reports/page.rebuilding"; }

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

// Waits until `min_interval` has passed since the page was last written.
void wait_for_interval(const std::string& page, std::chrono::milliseconds min_interval) {
  struct stat st {};
  if (min_interval.count() <= 0 || ::stat(page.c_str(), &st) != 0) return;
  const auto written = std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::seconds(st.st_mtim.tv_sec) + std::chrono::nanoseconds(st.st_mtim.tv_nsec)));
  const auto due = written + min_interval;
  const auto now = std::chrono::system_clock::now();
  // A page dated in the future (a clock set back) would wait forever: not more than one interval.
  if (due > now) std::this_thread::sleep_for(std::min<std::chrono::system_clock::duration>(due - now, min_interval));
}

bool is_stale(const std::string& served) { return exists(stale_mark(served)) || exists(taken_mark(served)); }

// Rebuilds while the page is stale; the lock is held by the caller.
Result<int> rebuild_while_stale(const std::string& served, const std::string& hosts_path,
                                std::chrono::milliseconds min_interval) {
  int rebuilds = 0;
  while (is_stale(served)) {
    wait_for_interval(served + "/status/index.html", min_interval);
    // The mark is taken before the records are read: a report stored during
    // the rebuild marks the page again and is shown by the next rebuild.
    if (::rename(stale_mark(served).c_str(), taken_mark(served).c_str()) != 0 && errno != ENOENT)
      return Error{os_error(stale_mark(served), "cannot take the mark")};
    TROY_TRY(publish_status_page(served, hosts_path, std::chrono::system_clock::now()));
    if (::unlink(taken_mark(served).c_str()) != 0 && errno != ENOENT)
      return Error{os_error(taken_mark(served), "cannot remove the mark")};
    ++rebuilds;
  }
  return rebuilds;
}

}  // namespace

Result<void> mark_status_page_stale(const std::string& served) {
  const std::string path = stale_mark(served);
  const FileDescriptor mark(::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
  if (mark.get() < 0) return Error{os_error(path, "cannot create the mark")};
  return success();
}

Result<int> refresh_status_page(const std::string& served, const std::string& hosts_path,
                                std::chrono::milliseconds min_interval) {
  const std::string lock_path = served + "/reports/page.lock";
  int rebuilds = 0;
  while (is_stale(served)) {
    const FileDescriptor lock(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    if (lock.get() < 0) return Error{os_error(lock_path, "cannot open the lock")};
    if (::flock(lock.get(), LOCK_EX | LOCK_NB) != 0) {
      if (errno == EWOULDBLOCK) return rebuilds;  // the holder sees the mark after it lets go
      if (errno != EINTR) return Error{os_error(lock_path, "cannot lock")};
      continue;
    }
    TROY_ASSIGN(done, rebuild_while_stale(served, hosts_path, min_interval));
    rebuilds += done;
    // The lock goes with `lock`; a mark made after the last look but before
    // the lock went found it taken: look again.
  }
  return rebuilds;
}

}  // namespace troy::cli
