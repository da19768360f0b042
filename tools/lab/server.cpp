#include "server.h"
#include "file_descriptor.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <charconv>
#include <cstring>
#include <ctime>
#include <limits>
#include <map>
#include <span>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "manifest.h"
#include "night.h"
#include "output.h"
#include "record_text.h"
#include "signature.h"
#include "status_page.h"
#include "sync_update.h"
#include "text.h"

namespace troy::cli {
namespace {

using Json = nlohmann::json;
// Small objects whose field order a reader sees (log lines, status output).
// Never used for a report itself: its lookups are linear in the key count.
using OrderedJson = nlohmann::ordered_json;

// Deeper JSON is refused: nlohmann's dump() recurses once per level, and a
// 1 MiB body of '[' would overflow the stack. A report nests about 5 deep.
constexpr int kMaxReportDepth = 64;
// boot/cmdline's first line; the kernel takes 2048 bytes of command line on x86.
constexpr size_t kMaxCmdlineBytes = 4096;
constexpr size_t kMaxLogBytes = size_t{256} << 20;
constexpr size_t kMaxSmallFileBytes = 4096;  // a key record, a boot state
constexpr size_t kMaxRateFileBytes = 1 << 20;

CgiResponse reply(std::string status, std::string_view line) {
  return CgiResponse{std::move(status), "text/plain", fmt::format("{}\n", line)};
}
CgiResponse bad_request(std::string_view line) { return reply("400 Bad Request", line); }
CgiResponse server_error(std::string_view line) { return reply("500 Internal Server Error", line); }

std::optional<std::string> query_parameter(std::string_view query, std::string_view key);

bool is_hex_digit(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
int hex_value(char c) { return is_digit(c) ? c - '0' : (c | 0x20) - 'a' + 10; }
bool is_printable_ascii(char c) { return c >= 0x20 && c <= 0x7e; }

// A file's first `max_bytes` bytes; nullopt when it does not exist.
Result<std::optional<std::string>> read_file_prefix(const std::string& path, size_t max_bytes) {
  FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    if (errno == ENOENT) return std::optional<std::string>();
    return Error{os_error(path, "cannot open")};
  }
  std::string text;
  char buffer[1 << 16];
  while (text.size() < max_bytes) {
    const ssize_t n = ::read(fd.get(), buffer, std::min(sizeof buffer, max_bytes - text.size()));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error{os_error(path, "cannot read")};
    if (n == 0) break;
    text.append(buffer, static_cast<size_t>(n));
  }
  return std::optional<std::string>(std::move(text));
}

// ---- the report ----

struct CheckedReport {
  Json document;
  std::string machine;  // normalized
  std::string result;
  std::string version;
  std::string message;
  std::optional<std::string> machine_key;  // 64 hex digits: sent until the server has it
  std::optional<uint64_t> counter;         // report_counter
  // A progress report (result "progress"): its state, percent and detail.
  std::string state;
  int percent = -1;
  std::string detail;
};

Result<Json> parse_json_body(const std::string& body) {
  bool too_deep = false;
  const Json::parser_callback_t note_depth = [&too_deep](int depth, Json::parse_event_t, Json&) {
    too_deep = too_deep || depth > kMaxReportDepth;
    return true;
  };
  Json document = Json::parse(body, note_depth, false);
  if (document.is_discarded()) return Error{"the body is not JSON (a report is one JSON object)"};
  if (too_deep) return Error{fmt::format("the report nests deeper than {} levels", kMaxReportDepth)};
  if (!document.is_object()) return Error{"the report is not a JSON object"};
  return document;
}

Result<std::string> string_field(const Json& report, const char* name) {
  const auto field = report.find(name);
  if (field == report.end()) return Error{fmt::format("{}: missing", name)};
  if (!field->is_string()) return Error{fmt::format("{}: not a JSON string", name)};
  return field->get<std::string>();
}

bool is_lower_hex(std::string_view text, size_t size) {
  return text.size() == size &&
         std::all_of(text.begin(), text.end(), [](char c) { return is_digit(c) || (c >= 'a' && c <= 'f'); });
}

// machine_key and report_counter, when present (machine_state.h).
Result<void> check_authentication_fields(CheckedReport& report) {
  if (report.document.contains("machine_key")) {
    TROY_ASSIGN(key, string_field(report.document, "machine_key"));
    if (!is_lower_hex(key, 64)) return Error{"machine_key: not 64 lower-case hex digits"};
    report.machine_key = key;
  }
  if (const auto counter = report.document.find("report_counter"); counter != report.document.end()) {
    if (!counter->is_number_unsigned()) return Error{"report_counter: not a whole number"};
    report.counter = counter->get<uint64_t>();
  }
  return success();
}

// A progress report's state (status_page.h), percent (0-100) and detail.
Result<void> check_progress_fields(CheckedReport& report) {
  TROY_ASSIGN(state, string_field(report.document, "state"));
  if (!is_progress_state(state))
    return Error{"state: not a progress state (checking, downloading, applying, syncing, verifying, merging)"};
  const auto percent = report.document.find("percent");
  if (percent == report.document.end() || !percent->is_number_unsigned() || percent->get<uint64_t>() > 100)
    return Error{"percent: not a whole number from 0 to 100"};
  TROY_ASSIGN(detail, string_field(report.document, "detail"));
  if (detail.size() > kMaxDetailBytes)
    return Error{fmt::format("detail: {} bytes, more than {}", detail.size(), kMaxDetailBytes)};
  report.state = state;
  report.percent = static_cast<int>(percent->get<uint64_t>());
  report.detail = detail;
  return success();
}

// The four fields the server reads; every other one is kept as it came.
Result<CheckedReport> check_report(const std::string& body) {
  TROY_ASSIGN(document, parse_json_body(body));
  TROY_ASSIGN(machine, string_field(document, "machine"));
  const auto mac = normalize_mac(machine);
  if (!mac) return Error{"machine: not a MAC address (six pairs of hex digits separated by ':' or '-')"};
  TROY_ASSIGN(result, string_field(document, "result"));
  if (result != "ok" && result != "error" && result != "progress")
    return Error{"result: not \"ok\", \"error\" or \"progress\""};
  TROY_ASSIGN(version, string_field(document, "version"));
  if (!version.empty() && !valid_version_name(version))
    return Error{"version: not a version name (1 to 64 of A-Z a-z 0-9 . _ -, not starting with a dot), "
                 "\"incomplete\" or \"\""};
  TROY_ASSIGN(message, string_field(document, "message"));
  if (message.size() > kMaxReportMessageBytes)
    return Error{fmt::format("message: {} bytes, more than {}", message.size(), kMaxReportMessageBytes)};
  CheckedReport checked{std::move(document), *mac, result, version, message, std::nullopt, std::nullopt, "", -1, ""};
  TROY_TRY(check_authentication_fields(checked));
  if (result == "progress") TROY_TRY(check_progress_fields(checked));
  return checked;
}

Result<void> make_folder(const std::string& path) {
  if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) return Error{os_error(path, "cannot create the folder")};
  return success();
}

// MACHINE.json, replaced in one step: a reader sees the old or the new report.
Result<void> store_report(const std::string& reports, Json document) {
  const std::string machine = document["machine"].get<std::string>();
  const std::string text = dump_json(document, 2) + "\n";
  TROY_ASSIGN(out, OutputFile::create(fmt::format("{}/{}.json", reports, machine), true));
  TROY_TRY(out.write_at(0, std::as_bytes(std::span(text))));
  return out.commit();
}

// `auth`: ok (HMAC verified), new-key (first contact: key learned),
// none (a machine that keeps no key), refused (result "refused" then).
std::string log_line(const CheckedReport& report, const std::string& time, const std::string& address,
                     const std::string& auth) {
  OrderedJson line;
  line["time"] = time;
  line["machine"] = report.machine;
  line["address"] = address;
  line["result"] = report.result;
  line["version"] = report.version;
  line["message"] = report.message;
  line["auth"] = auth;
  return dump_json(line, -1) + "\n";
}

// Called under the log's lock: log.jsonl becomes log.jsonl.1 (replacing the
// one before) when this line would take it past kReportLogRotateBytes.
Result<void> rotate_log_if_full(const std::string& log, size_t line_bytes) {
  struct stat st {};
  if (::stat(log.c_str(), &st) != 0) return success();
  if (static_cast<uint64_t>(st.st_size) + line_bytes <= kReportLogRotateBytes) return success();
  if (::rename(log.c_str(), (log + ".1").c_str()) != 0) return Error{os_error(log, "cannot rotate the log")};
  return success();
}

// One write with O_APPEND: concurrent reports never interleave inside a
// line. The lock (a file of its own, so rotating never moves it) keeps a
// line from landing in the file being rotated away.
Result<void> append_to_log(const std::string& reports, const std::string& line) {
  const std::string lock_path = reports + "/log.lock";
  const std::string log = reports + "/log.jsonl";
  FileDescriptor lock(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (lock.get() < 0) return Error{os_error(lock_path, "cannot open the log's lock")};
  while (::flock(lock.get(), LOCK_EX) != 0)
    if (errno != EINTR) return Error{os_error(lock_path, "cannot lock")};
  TROY_TRY(rotate_log_if_full(log, line.size()));
  FileDescriptor out(::open(log.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644));
  if (out.get() < 0) return Error{os_error(log, "cannot open")};
  ssize_t written = -1;
  do {
    written = ::write(out.get(), line.data(), line.size());
  } while (written < 0 && errno == EINTR);
  if (written < 0) return Error{os_error(log, "cannot append")};
  if (static_cast<size_t>(written) != line.size()) return Error{fmt::format("{}: a log line was cut short", log)};
  return success();
}

std::string boot_state_path(const std::string& served, const std::string& machine) {
  return fmt::format("{}/reports/{}.boot", served, machine);
}

Result<void> write_small_file(const std::string& path, const std::string& text) {
  TROY_ASSIGN(out, OutputFile::create(path, true));
  TROY_TRY(out.write_at(0, std::as_bytes(std::span(text))));
  return out.commit();
}

// What the boot script decides on (handle_boot): the newest ACCEPTED
// report's result, version and time; a stranger's GET changes nothing.
Result<void> write_boot_state(const std::string& served, const CheckedReport& report, int64_t now_seconds) {
  OrderedJson state;
  state["result"] = report.result;
  state["version"] = report.version;
  state["time"] = now_seconds;
  return write_small_file(boot_state_path(served, report.machine), dump_json(state, -1) + "\n");
}

Result<void> record_report(const std::string& served, CheckedReport report, const std::string& address,
                           const std::string& auth, std::chrono::system_clock::time_point now) {
  const std::string reports = served + "/reports";
  const std::string time = iso_utc(now);
  const std::string line = log_line(report, time, address, auth);
  report.document["machine"] = report.machine;
  report.document["received"] = time;
  report.document["address"] = address;
  report.document["auth"] = auth;
  report.document.erase("machine_key");  // kept in reports/keys only
  TROY_TRY(store_report(reports, report.document));
  TROY_TRY(append_to_log(reports, line));
  return write_boot_state(served, report, epoch_seconds(now));
}

// ---- authentication (machine_state.h): keys learned on first contact ----

// reports/keys/MACHINE: {"key", "enrolled", "counter", "last_hmac"}.
struct KeyRecord {
  std::string key;  // 64 hex digits
  std::string enrolled;
  uint64_t counter = 0;
  std::string last_hmac;
};

std::string key_path(const std::string& reports, const std::string& machine) {
  return fmt::format("{}/keys/{}", reports, machine);
}

Result<std::optional<KeyRecord>> read_key_record(const std::string& reports, const std::string& machine) {
  const std::string path = key_path(reports, machine);
  TROY_ASSIGN(text, read_file_prefix(path, kMaxSmallFileBytes));
  if (!text) return std::optional<KeyRecord>();
  const Json record = Json::parse(*text, nullptr, false);
  const auto string_of = [&record](const char* name) {
    return record.is_object() && record.contains(name) && record[name].is_string() ? record[name].get<std::string>()
                                                                                    : std::string();
  };
  KeyRecord key{string_of("key"), string_of("enrolled"), 0, string_of("last_hmac")};
  const auto counter = record.is_object() ? record.find("counter") : record.end();
  if (!is_lower_hex(key.key, 64) || counter == record.end() || !counter->is_number_unsigned())
    return Error{fmt::format("{}: not a key record (remove it with troy lab forget)", path)};
  key.counter = counter->get<uint64_t>();
  return std::optional<KeyRecord>(std::move(key));
}

Result<void> write_key_record(const std::string& reports, const std::string& machine, const KeyRecord& key) {
  if (::mkdir((reports + "/keys").c_str(), 0700) != 0 && errno != EEXIST)
    return Error{os_error(reports + "/keys", "cannot create the folder")};
  OrderedJson record;
  record["key"] = key.key;
  record["enrolled"] = key.enrolled;
  record["counter"] = key.counter;
  record["last_hmac"] = key.last_hmac;
  return write_small_file(key_path(reports, machine), dump_json(record, -1) + "\n");
}

std::vector<uint8_t> hex_bytes(std::string_view hex) {
  std::vector<uint8_t> bytes;
  for (size_t at = 0; at + 1 < hex.size(); at += 2)
    bytes.push_back(static_cast<uint8_t>(hex_value(hex[at]) * 16 + hex_value(hex[at + 1])));
  return bytes;
}

bool hmac_verifies(const std::string& key_hex, const std::string& body, const std::optional<std::string>& hmac) {
  return hmac && same_hmac(hmac_sha256_hex(hex_bytes(key_hex), body), *hmac);
}

// A report signed with another key than the enrolled one: shown by troy lab
// status as CHANGED until the admin runs troy lab forget (a replaced disk).
Result<void> note_changed_key(const std::string& reports, const std::string& machine, const std::string& key,
                              const std::string& time) {
  OrderedJson record;
  record["key"] = key;
  record["seen"] = time;
  return write_small_file(key_path(reports, machine) + ".changed", dump_json(record, -1) + "\n");
}

struct Verdict {
  std::string auth;                   // for the log line
  std::optional<std::string> refusal;  // 403 with this line
  bool duplicate = false;             // the same report again (a retry whose answer was lost)
};

Verdict refused(std::string line) { return Verdict{"refused", std::move(line), false}; }
Verdict accepted(std::string auth) { return Verdict{std::move(auth), std::nullopt, false}; }

// Checks the report's HMAC (?hmac= over the exact body) against the key the
// machine enrolled, or enrolls the key a first report carries (trust on
// first use), and refuses a replayed report_counter.
Result<Verdict> authenticate(const std::string& reports, const CheckedReport& report, const CgiRequest& request,
                             const std::string& time) {
  const auto hmac = query_parameter(request.query, "hmac");
  const std::string& machine = report.machine;
  TROY_ASSIGN(known, read_key_record(reports, machine));
  if (!known) {
    if (!report.machine_key && !hmac) return accepted("none");
    if (!report.machine_key)
      return refused(fmt::format("report refused: signed, but the server holds no key for {} (forgotten?); the "
                                 "machine sends its key with its next report",
                                 machine));
    if (!hmac_verifies(*report.machine_key, request.body, hmac))
      return refused("report refused: its HMAC does not verify with the machine_key it carries");
    TROY_TRY(write_key_record(reports, machine, KeyRecord{*report.machine_key, time, report.counter.value_or(0), *hmac}));
    return accepted("new-key");
  }
  if (!hmac_verifies(known->key, request.body, hmac)) {
    if (report.machine_key && *report.machine_key != known->key && hmac_verifies(*report.machine_key, request.body, hmac))
      TROY_TRY(note_changed_key(reports, machine, *report.machine_key, time));
    return refused(fmt::format("report refused: {} with the key {} enrolled on {} (a replaced disk? troy lab "
                               "forget {} accepts its new key)",
                               hmac ? "its HMAC does not verify" : "unauthenticated, not signed", machine,
                               known->enrolled, machine));
  }
  const uint64_t counter = report.counter.value_or(0);
  if (counter <= known->counter) {
    if (counter == known->counter && same_hmac(*hmac, known->last_hmac)) return Verdict{"ok", std::nullopt, true};
    return refused(fmt::format("report refused: report_counter {} is not above {}, the last one accepted from {} "
                               "(a replayed report)",
                               counter, known->counter, machine));
  }
  known->counter = counter;
  known->last_hmac = *hmac;
  TROY_TRY(write_key_record(reports, machine, *known));
  return accepted("ok");
}

// ---- limits: rate per address, machine count ----

// Takes one token of `address`'s bucket in reports/rate ("ADDRESS TOKENS
// SECONDS" lines: kReportBurst at most, one back every
// kReportRefillSeconds); false when it is empty. Called under the state lock.
Result<bool> take_rate_token(const std::string& path, const std::string& address, int64_t now, int burst,
                             int refill_seconds) {
  TROY_ASSIGN(text, read_file_prefix(path, kMaxRateFileBytes));
  std::map<std::string, std::pair<double, int64_t>> buckets;  // address -> tokens, when counted
  const std::string content = text.value_or("");
  std::string_view rest = content;
  while (!rest.empty()) {
    const size_t end = std::min(rest.find('\n'), rest.size());
    const std::string line(rest.substr(0, end));
    rest.remove_prefix(std::min(end + 1, rest.size()));
    char name[64];
    double tokens = 0;
    long long when = 0;
    if (std::sscanf(line.c_str(), "%63s %lf %lld", name, &tokens, &when) == 3) buckets[name] = {tokens, when};
  }
  const auto refill = [now, burst, refill_seconds](std::pair<double, int64_t> bucket) {
    const double back = static_cast<double>(std::max<int64_t>(0, now - bucket.second)) / refill_seconds;
    return std::min<double>(burst, bucket.first + back);
  };
  const double tokens = buckets.contains(address) ? refill(buckets[address]) : burst;
  const bool allowed = tokens >= 1;
  buckets[address] = {allowed ? tokens - 1 : tokens, now};
  std::string out;
  size_t kept = 0;
  for (const auto& [name, bucket] : buckets) {
    // A full bucket is the default: not written. At most kMaxRateAddresses kept.
    if (refill(bucket) >= burst || ++kept > kMaxRateAddresses) continue;
    out += fmt::format("{} {:.3f} {}\n", name, bucket.first, bucket.second);
  }
  // Rewritten in place, not flushed: a crash leaves at worst a line the next
  // read skips (a full bucket), and a report is not slowed by a flush.
  FileDescriptor fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (fd.get() < 0 || ::write(fd.get(), out.data(), out.size()) != static_cast<ssize_t>(out.size()))
    return Error{os_error(path, "cannot write")};
  return allowed;
}

// REMOTE_ADDR as a word of the rate file: digits, hex, '.', ':' only.
std::string rate_key(const std::string& address) {
  const bool plain = !address.empty() && address.size() <= 45 &&
                     std::all_of(address.begin(), address.end(), [](char c) { return is_hex_digit(c) || c == '.' || c == ':'; });
  return plain ? address : "other";
}

// How many machines have a stored report (MACHINE.json).
size_t stored_machines(const std::string& reports) {
  size_t count = 0;
  if (DIR* directory = ::opendir(reports.c_str())) {
    while (const dirent* entry = ::readdir(directory)) {
      const std::string_view name = entry->d_name;
      if (name.size() == 22 && name.ends_with(".json") && normalize_mac(name.substr(0, 17))) ++count;
    }
    ::closedir(directory);
  }
  return count;
}

Result<FileDescriptor*> lock_state(const std::string& reports, std::unique_ptr<FileDescriptor>& lock) {
  const std::string path = reports + "/state.lock";
  lock = std::make_unique<FileDescriptor>(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (lock->get() < 0) return Error{os_error(path, "cannot open the lock")};
  while (::flock(lock->get(), LOCK_EX) != 0)
    if (errno != EINTR) return Error{os_error(path, "cannot lock")};
  return lock.get();
}

std::optional<std::string> newest_version(const std::string& served);

// The machine's reimage flag (troy lab reimage) is done with once the
// machine reports, authenticated by its key, "ok" at the newest version: it
// is removed, unless it was set after this report arrived (a new request).
// A machine without a key (auth none or new-key) keeps it: anyone could send
// that report. The folder is the web server user's (pxe/serve.sh).
Result<void> clear_reimage_flag(const std::string& served, const std::string& machine,
                                std::chrono::system_clock::time_point now) {
  const std::string flag = served + "/" + reimage_flag_path(machine);
  struct stat st {};
  if (::lstat(flag.c_str(), &st) != 0 || st.st_mtime > epoch_seconds(now)) return {};
  if (::unlink(flag.c_str()) != 0 && errno != ENOENT)
    return Error{fmt::format("{}: cannot remove the reimage flag of a machine now at the newest version: {}", flag,
                             std::strerror(errno))};
  return {};
}

ReportFacts report_facts(const CheckedReport& report, const std::string& address, const std::string& time) {
  const std::string state = report.result == "progress" ? report.state : report.result == "ok" ? "done" : "error";
  return ReportFacts{report.machine, address, time,          state,
                     report.percent, report.detail, report.version, report.message};
}

// The status page is rebuilt after the answer (refresh_status_page in
// status_page.h); here it is only marked stale. A failure is said in the
// answer (the report is stored all the same) and in lighttpd's error log.
std::string page_note(const std::string& served) {
  auto marked = mark_status_page_stale(served);
  if (marked) return "";
  std::fprintf(stderr, "troy lab report: the status page will not be updated: %s\n",
               printable(marked.error().message).c_str());
  return "; the status page will not be updated: " + marked.error().message;
}

// The report checked, authenticated and stored, under reports/state.lock
// (keys, counters, the rate file and the machine count change together).
Result<CgiResponse> take_report(const std::string& served, const CgiRequest& request,
                                std::chrono::system_clock::time_point now) {
  // A malformed report writes nothing, not even to the rate file.
  auto report = check_report(request.body);
  if (!report) return bad_request(report.error().message);
  const std::string reports = served + "/reports";
  TROY_TRY(make_folder(reports));
  std::unique_ptr<FileDescriptor> lock;
  TROY_TRY(lock_state(reports, lock));
  // Progress reports have a budget of their own: a flood of them never
  // takes the final reports' tokens, and a machine's legitimate ones (one per
  // 10 s, or 3 s when its state changes; update.cpp) never run out.
  const bool progress = report->result == "progress";
  const int burst = progress ? kProgressBurst : kReportBurst;
  const int refill = progress ? kProgressRefillSeconds : kReportRefillSeconds;
  TROY_ASSIGN(allowed, take_rate_token(reports + (progress ? "/rate.progress" : "/rate"),
                                       rate_key(request.remote_address), epoch_seconds(now), burst, refill));
  if (!allowed)
    return reply("429 Too Many Requests",
                 fmt::format("{}: more than {} {}reports, then one per {} s: try again later", request.remote_address,
                             burst, progress ? "progress " : "", refill));
  struct stat st {};
  const bool new_machine = ::stat(fmt::format("{}/{}.json", reports, report->machine).c_str(), &st) != 0 &&
                           ::stat(fmt::format("{}/status/{}.json", reports, report->machine).c_str(), &st) != 0;
  if (new_machine && std::max(stored_machines(reports), stored_machines(reports + "/status")) >= kMaxReportMachines)
    return reply("507 Insufficient Storage",
                 fmt::format("{}: reports are kept for at most {} machines; remove the reports of machines that "
                             "are gone",
                             reports, kMaxReportMachines));
  const std::string time = iso_utc(now);
  TROY_ASSIGN(verdict, authenticate(reports, *report, request, time));
  if (verdict.refusal) {
    CheckedReport line = *report;
    line.result = "refused";
    line.message = *verdict.refusal + ": " + report->message;
    TROY_TRY(append_to_log(reports, log_line(line, time, request.remote_address, "refused")));
    return reply("403 Forbidden", *verdict.refusal);
  }
  if (verdict.duplicate) return reply("200 OK", "report already stored");
  TROY_TRY(note_report(served, report_facts(*report, request.remote_address, time)));
  if (progress) {
    // Only the status and the boot decision change: a machine at work boots the payload again.
    TROY_TRY(write_boot_state(served, *report, epoch_seconds(now)));
    return reply("200 OK", "progress noted" + page_note(served));
  }
  const std::string machine = report->machine;
  const bool at_newest = report->result == "ok" && report->version == newest_version(served);
  TROY_TRY(record_report(served, std::move(*report), request.remote_address, verdict.auth, now));
  if (at_newest && verdict.auth == "ok")
    if (auto cleared = clear_reimage_flag(served, machine, now); !cleared)
      return reply("200 OK", "report stored; " + cleared.error().message);  // stored: not a failed report
  return reply("200 OK", "report stored" + page_note(served));
}

CgiResponse handle_report_unguarded(const std::string& served, const CgiRequest& request,
                                    std::chrono::system_clock::time_point now) {
  if (auto refusal = refuse_report_early(request)) return *refusal;
  if (request.body.size() != *parse_content_length(*request.content_length))
    return bad_request(fmt::format("the body holds {} bytes, not the CONTENT_LENGTH {}", request.body.size(),
                                   *request.content_length));
  auto answer = take_report(served, request, now);
  if (!answer) return server_error(answer.error().message);
  return *answer;
}

// ---- the boot script ----

// The first value of `key` in a query string, percent-decoded; nullopt when
// absent or badly encoded.
std::optional<std::string> query_parameter(std::string_view query, std::string_view key) {
  while (!query.empty()) {
    const size_t end = std::min(query.find('&'), query.size());
    const std::string_view pair = query.substr(0, end);
    query.remove_prefix(std::min(end + 1, query.size()));
    if (pair.size() <= key.size() || pair.substr(0, key.size()) != key || pair[key.size()] != '=') continue;
    const std::string_view encoded = pair.substr(key.size() + 1);
    std::string value;
    for (size_t at = 0; at < encoded.size(); ++at) {
      if (encoded[at] != '%') {
        value += encoded[at];
        continue;
      }
      if (at + 2 >= encoded.size() || !is_hex_digit(encoded[at + 1]) || !is_hex_digit(encoded[at + 2]))
        return std::nullopt;
      value += static_cast<char>(hex_value(encoded[at + 1]) * 16 + hex_value(encoded[at + 2]));
      at += 2;
    }
    return value;
  }
  return std::nullopt;
}

// Characters of a host name, an IPv4 address or a bracketed IPv6 one, and a
// port: nothing iPXE's script language would read as syntax ($ { } space ...).
bool is_host_and_port(std::string_view text) {
  return !text.empty() && text.size() <= 255 && text.front() != '-' &&
         std::all_of(text.begin(), text.end(), [](char c) {
           return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '.' || c == '-' ||
                  c == ':' || c == '[' || c == ']';
         });
}

// "http://HOST[:PORT]" as the machine reached this server (so the payload is
// fetched the same way), else the address and port the server received on.
std::optional<std::string> server_url(const CgiRequest& request) {
  if (is_host_and_port(request.host)) return "http://" + request.host;
  const std::string& address = request.server_address;
  const std::string& port = request.server_port;
  const bool address_ok = !address.empty() && address.size() <= 45 &&
                          std::all_of(address.begin(), address.end(),
                                      [](char c) { return is_hex_digit(c) || c == '.' || c == ':'; });
  const bool port_ok = !port.empty() && port.size() <= 5 && std::all_of(port.begin(), port.end(), is_digit);
  if (!address_ok || !port_ok) return std::nullopt;
  const bool ipv6 = address.find(':') != std::string::npos;
  return ipv6 ? fmt::format("http://[{}]:{}", address, port) : fmt::format("http://{}:{}", address, port);
}

// The name of the newest version in SERVED/manifest (the server's own file,
// as troy publish wrote it); nullopt when there is none to read.
std::optional<std::string> newest_version(const std::string& served) {
  auto text = read_manifest_file(served + "/manifest");
  if (!text) return std::nullopt;
  auto manifest = parse_manifest(*text, served + "/manifest");
  if (!manifest) return std::nullopt;
  return manifest->versions.back().name;
}

// Whether the lab's manifest says `layout vhdboot ... reset` (manifest.h).
bool resets_student_child(const std::string& served) {
  auto text = read_manifest_file(served + "/manifest");
  if (!text) return false;
  auto manifest = parse_manifest(*text, served + "/manifest");
  return manifest && manifest->vhdboot && !manifest->vhdboot->keep_child;
}

// The local disk when the machine's newest accepted report (reports/MACHINE.boot)
// says its disk holds the newest published version, or reported an error
// within kBootLocalAfterErrorSeconds (its disk is as it was: let the class
// use it; the next power-on after that tries again). Never a half-updated
// disk. A state, not a flag: requests change nothing.
bool boots_local_disk(const std::string& served, const std::string& machine, int64_t now) {
  auto text = read_file_prefix(boot_state_path(served, machine), kMaxSmallFileBytes);
  if (!text || !*text) return false;
  const Json state = Json::parse(**text, nullptr, false);
  // find(), not operator[]: a missing key of a const object is undefined.
  const auto field = [&state](const char* name) { return state.is_object() ? state.find(name) : state.end(); };
  if (field("result") == state.end() || !field("result")->is_string() || field("version") == state.end() ||
      !field("version")->is_string() || field("time") == state.end() || !field("time")->is_number_integer())
    return false;
  const std::string version = field("version")->get<std::string>();
  // A machine at work (a progress report came last) may hold half a version.
  if (*field("result") == "progress" || version == "incomplete" || version.empty()) return false;
  const int64_t age = now - field("time")->get<int64_t>();
  // A native-VHD-boot lab that resets the student's child does it in the
  // payload: the local disk only for the reboot right after its report.
  if (version == newest_version(served))
    return !resets_student_child(served) || (age >= 0 && age < kVhdBootLocalAfterReportSeconds);
  return *field("result") == "error" && age >= 0 && age < kBootLocalAfterErrorSeconds;
}

// The lab's kernel arguments for the payload (console, troy.then=, troy.disk=...):
// the first line of boot/cmdline, none when it does not exist.
Result<std::string> payload_arguments(const std::string& served) {
  const std::string path = served + "/boot/cmdline";
  TROY_ASSIGN(text, read_file_prefix(path, kMaxCmdlineBytes + 1));
  if (!text) return std::string();
  const size_t newline = text->find('\n');
  if (newline == std::string::npos && text->size() > kMaxCmdlineBytes)
    return Error{fmt::format("{}: line 1 is longer than {} bytes", path, kMaxCmdlineBytes)};
  std::string line = text->substr(0, newline);
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (!std::all_of(line.begin(), line.end(), is_printable_ascii))
    return Error{fmt::format("{}: line 1 holds a character that is not printable ASCII", path)};
  return line;
}

std::string local_disk_script(const std::string& machine) {
  return fmt::format(
      "#!ipxe\n"
      "echo Troy: machine {} holds the newest version; booting its local disk\n"
      "iseq ${{platform}} pcbios && sanboot --no-describe --drive 0x80 ||\n"
      "exit\n",
      machine);
}

// initrd=initrd.img: UEFI kernels find the initrd by that name.
std::string payload_script(const std::string& server, const std::string& arguments) {
  return fmt::format(
      "#!ipxe\n"
      "echo Troy: loading the boot payload from {0}\n"
      "kernel {0}/boot/vmlinuz initrd=initrd.img troy.server={0} {1} || goto failed\n"
      "initrd {0}/boot/initrd.img || goto failed\n"
      "boot || goto failed\n"
      ":failed\n"
      "echo Troy: could not load the boot payload from {0}; booting the local disk in 10 s\n"
      "sleep 10\n"
      "iseq ${{platform}} pcbios && sanboot --no-describe --drive 0x80 ||\n"
      "exit\n",
      server, arguments);
}

// platform= is not read: both scripts test iPXE's own ${platform}, so no
// byte of it reaches the script.
// A machine the hosts file tags +keep-child: troy.child=keep for its payload
// (a native-VHD-boot lab keeps its student child; nothing else changes).
bool keeps_child_by_tag(const std::string& hosts_path, const std::string& machine) {
  if (hosts_path.empty()) return false;
  auto hosts = read_hosts(hosts_path, true);
  if (!hosts) return false;  // said by the teacher menu's reading of the same file
  const HostEntry* entry = hosts->find(machine);
  return entry && entry->has_tag(kKeepChildTag);
}

CgiResponse handle_boot_unguarded(const std::string& served, const CgiRequest& request,
                                  std::chrono::system_clock::time_point now, const std::string& hosts) {
  const auto server = server_url(request);
  if (!server) return bad_request("Host: not a host[:port], and SERVER_ADDR or SERVER_PORT is unusable");
  // A bad mac= still boots the payload, but never names a file.
  const auto machine = normalize_mac(query_parameter(request.query, "mac").value_or(""));
  // A machine woken by the night (night.h) boots the payload and powers off after it.
  const bool night = machine && night_boot(served, *machine, epoch_seconds(now));
  if (machine && !night && boots_local_disk(served, *machine, epoch_seconds(now)))
    return CgiResponse{"200 OK", "text/plain", local_disk_script(*machine)};
  auto arguments = payload_arguments(served);
  if (!arguments) return server_error(arguments.error().message);
  if (machine && keeps_child_by_tag(hosts, *machine)) *arguments += " troy.child=keep";
  return CgiResponse{"200 OK", "text/plain", payload_script(*server, night ? night_arguments(*arguments) : *arguments)};
}

// A teacher machine (+teacher in the hosts file) chooses: the usual script
// (the default, after 10 s), or the payload with troy.then=checkin, which
// uploads the teacher's child (docs/checkin.md). A hosts file that cannot be
// read gives no menu (said in lighttpd's error log): the boot must not fail.
CgiResponse teacher_menu_if_teacher(const std::string& served, const CgiRequest& request, const std::string& hosts_path,
                                    CgiResponse usual) {
  if (hosts_path.empty()) return usual;
  const auto machine = normalize_mac(query_parameter(request.query, "mac").value_or(""));
  if (!machine) return usual;
  auto hosts = read_hosts(hosts_path, true);
  if (!hosts) {
    std::fprintf(stderr, "troy lab boot: no teacher menu: %s\n", printable(hosts.error().message).c_str());
    return usual;
  }
  const HostEntry* entry = hosts->find(*machine);
  if (!entry || !entry->has_tag(kTeacherTag)) return usual;
  const auto server = server_url(request);
  auto arguments = payload_arguments(served);
  if (!server || !arguments) return usual;
  std::string body = usual.body.substr(usual.body.find('\n') + 1);  // without its #!ipxe line
  // The seat is the admin's word, but iPXE would expand a ${...} in it.
  std::string seat = entry->seat;
  for (char& c : seat)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') c = '_';
  usual.body = fmt::format(
      "#!ipxe\n"
      "menu Troy: teacher machine {0} ({1})\n"
      "item usual Start as usual (update, or this machine's disk)\n"
      "item checkin Check in this machine's changes (upload them to the lab server)\n"
      "choose --timeout 10000 --default usual target || goto usual\n"
      "goto ${{target}}\n"
      ":checkin\n"
      "kernel {2}/boot/vmlinuz initrd=initrd.img troy.server={2} {3} troy.then=checkin || goto usual\n"
      "initrd {2}/boot/initrd.img || goto usual\n"
      "boot || goto usual\n"
      ":usual\n"
      "{4}",
      seat, *machine, *server, *arguments, body);
  return usual;
}

// ---- the status table ----

std::optional<StatusRow> parse_log_line(std::string_view line) {
  const Json entry = Json::parse(line, nullptr, false);
  if (!entry.is_object()) return std::nullopt;  // also when discarded
  StatusRow row;
  const std::pair<const char*, std::string*> fields[] = {
      {"machine", &row.machine}, {"address", &row.address}, {"time", &row.time},
      {"result", &row.result},   {"version", &row.version}, {"message", &row.message}};
  for (const auto& [name, value] : fields) {
    const auto field = entry.find(name);
    if (field == entry.end() || !field->is_string()) return std::nullopt;
    *value = field->get<std::string>();
  }
  if (!normalize_mac(row.machine)) return std::nullopt;
  if (const auto auth = entry.find("auth"); auth != entry.end() && auth->is_string()) row.auth = auth->get<std::string>();
  return row;
}

// Each line of `text` that is a report line replaces its machine's row.
void read_log_lines(std::string_view text, std::map<std::string, StatusRow>& newest, size_t& skipped) {
  while (!text.empty()) {
    const size_t end = std::min(text.find('\n'), text.size());
    const std::string_view line = text.substr(0, end);
    text.remove_prefix(std::min(end + 1, text.size()));
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    auto row = parse_log_line(line);
    if (!row) {
      ++skipped;
      continue;
    }
    const std::string machine = *normalize_mac(row->machine);
    row->machine = machine;
    newest[machine] = std::move(*row);
  }
}

// StatusRow::key for one machine.
std::string key_state(const std::string& reports, const std::string& machine, int64_t now) {
  struct stat st {};
  if (::stat((key_path(reports, machine) + ".changed").c_str(), &st) == 0) return "CHANGED";
  auto key = read_key_record(reports, machine);
  if (!key) return "CHANGED";  // unreadable: the admin must look
  if (!*key) return "none";
  const auto enrolled = parse_utc_time((*key)->enrolled);
  return enrolled && now - *enrolled < kNewKeyDays * 86400 ? "new" : "ok";
}

// A cell of the table: a report's text must not move the terminal's cursor
// or send it escape sequences, so control characters (C0, DEL, and C1 as
// UTF-8) become spaces.
std::string table_cell(std::string_view text, std::string_view if_empty = "") {
  std::string cell;
  for (size_t at = 0; at < text.size(); ++at) {
    const auto byte = static_cast<unsigned char>(text[at]);
    const bool c1 = byte == 0xc2 && at + 1 < text.size() && static_cast<unsigned char>(text[at + 1]) < 0xa0 &&
                    static_cast<unsigned char>(text[at + 1]) >= 0x80;
    if (c1) ++at;
    cell += (byte < 0x20 || byte == 0x7f || c1) ? ' ' : text[at];
  }
  return cell.empty() ? std::string(if_empty) : cell;
}

std::string table_line(std::string_view machine, std::string_view address, std::string_view time,
                       std::string_view result, std::string_view version, std::string_view key,
                       std::string_view message) {
  std::string line = fmt::format("{:<17}  {:<15}  {:<20}  {:<7}  {:<12}  {:<7}  {}", machine, address, time, result,
                                 version, key, message);
  line.erase(line.find_last_not_of(' ') + 1);
  return line + "\n";
}

}  // namespace

std::string cgi_output(const CgiResponse& response) {
  return fmt::format("Status: {}\r\nContent-Type: {}\r\n\r\n{}", response.status, response.content_type,
                     response.body);
}

std::optional<std::string> normalize_mac(std::string_view text) {
  if (text.size() != 17) return std::nullopt;
  std::string mac;
  for (size_t at = 0; at < text.size(); ++at) {
    const char c = text[at];
    if (at % 3 == 2) {
      if (c != ':' && c != '-') return std::nullopt;
      mac += '-';
    } else {
      if (!is_hex_digit(c)) return std::nullopt;
      mac += (c >= 'A' && c <= 'F') ? static_cast<char>(c - 'A' + 'a') : c;
    }
  }
  return mac;
}

std::optional<uint64_t> parse_content_length(std::string_view text) {
  if (text.empty() || !std::all_of(text.begin(), text.end(), is_digit)) return std::nullopt;
  uint64_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error == std::errc::result_out_of_range) return std::numeric_limits<uint64_t>::max();
  if (error != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

std::optional<CgiResponse> refuse_report_early(const CgiRequest& request) {
  if (request.method != "POST") return reply("405 Method Not Allowed", "POST a report");
  if (!request.content_length || request.content_length->empty())
    return reply("411 Length Required", "CONTENT_LENGTH: missing (a report is sent with its length)");
  const auto length = parse_content_length(*request.content_length);
  if (!length) return bad_request("CONTENT_LENGTH: not a number");
  if (*length > kMaxReportBytes)
    return reply("413 Payload Too Large", fmt::format("CONTENT_LENGTH: a report is at most {} bytes", kMaxReportBytes));
  return std::nullopt;
}

CgiResponse handle_report(const std::string& served, const CgiRequest& request,
                          std::chrono::system_clock::time_point now) {
  try {
    return handle_report_unguarded(served, request, now);
  } catch (const std::exception& e) {
    return server_error(fmt::format("the report could not be handled: {}", e.what()));
  }
}

CgiResponse handle_boot(const std::string& served, const CgiRequest& request,
                        std::chrono::system_clock::time_point now, const std::string& hosts) {
  try {
    CgiResponse response = handle_boot_unguarded(served, request, now, hosts);
    return response.status == "200 OK" ? teacher_menu_if_teacher(served, request, hosts, std::move(response))
                                       : response;
  } catch (const std::exception& e) {
    return server_error(fmt::format("the boot script could not be made: {}", e.what()));
  }
}

Result<LabStatus> status_rows(const std::string& served, std::chrono::system_clock::time_point now) {
  std::map<std::string, StatusRow> newest;
  LabStatus status;
  try {
    // The rotated log first: a machine silent since the rotation keeps its row.
    for (const char* name : {"log.jsonl.1", "log.jsonl"}) {
      const std::string path = fmt::format("{}/reports/{}", served, name);
      TROY_ASSIGN(text, read_file_prefix(path, kMaxLogBytes + 1));
      if (!text) continue;
      if (text->size() > kMaxLogBytes) return Error{fmt::format("{}: larger than {} bytes", path, kMaxLogBytes)};
      read_log_lines(*text, newest, status.skipped_lines);
    }
  } catch (const std::exception& e) {
    return Error{fmt::format("{}/reports: the log could not be read: {}", served, e.what())};
  }
  for (auto& entry : newest) {
    entry.second.key = key_state(served + "/reports", entry.first, epoch_seconds(now));
    status.machines.push_back(std::move(entry.second));
  }
  return status;
}

std::string format_status_table(const LabStatus& status) {
  std::string text;
  if (status.machines.empty()) {
    text = "no machine has reported yet\n";
  } else {
    text = table_line("MACHINE", "ADDRESS", "LAST REPORT (UTC)", "RESULT", "DISK HOLDS", "KEY", "MESSAGE");
    for (const StatusRow& row : status.machines)
      text += table_line(table_cell(row.machine), table_cell(row.address, "?"), table_cell(row.time),
                         table_cell(row.result), table_cell(row.version, "-"), row.key, table_cell(row.message));
  }
  if (status.skipped_lines > 0)
    text += fmt::format("({} line{} of the log skipped: not a report line)\n", status.skipped_lines,
                        status.skipped_lines == 1 ? "" : "s");
  return text;
}

std::string format_status_json(const LabStatus& status) {
  OrderedJson out;
  out["machines"] = OrderedJson::array();
  for (const StatusRow& row : status.machines) {
    OrderedJson machine;
    machine["machine"] = row.machine;
    machine["address"] = row.address;
    machine["time"] = row.time;
    machine["result"] = row.result;
    machine["version"] = row.version;
    machine["message"] = row.message;
    machine["auth"] = row.auth;
    machine["key"] = row.key;
    out["machines"].push_back(std::move(machine));
  }
  out["skipped_lines"] = status.skipped_lines;
  return dump_json(out, 2) + "\n";
}

Result<std::optional<std::string>> authenticate_signed_request(const std::string& served, const std::string& machine,
                                                               std::string_view message, const std::string& hmac,
                                                               uint64_t counter) {
  using Refusal = std::optional<std::string>;
  const std::string reports = served + "/reports";
  TROY_TRY(make_folder(reports));
  std::unique_ptr<FileDescriptor> lock;
  TROY_TRY(lock_state(reports, lock));
  TROY_ASSIGN(known, read_key_record(reports, machine));
  if (!known)
    return Refusal(fmt::format("refused: the server holds no key for {}: a machine checks in with the key its "
                               "reports enrolled (boot it into the payload once, then see troy lab status)",
                               machine));
  if (!same_hmac(hmac_sha256_hex(hex_bytes(known->key), message), hmac))
    return Refusal(fmt::format("refused: its HMAC does not verify with the key {} enrolled on {}", machine,
                               known->enrolled));
  if (counter <= known->counter)
    return Refusal(fmt::format("refused: counter {} is not above {}, the last one accepted from {} (a replay)", counter,
                               known->counter, machine));
  known->counter = counter;
  known->last_hmac = hmac;
  TROY_TRY(write_key_record(reports, machine, *known));
  return Refusal();
}

Result<std::string> forget_machine(const std::string& served, const std::string& machine_text) {
  const auto machine = normalize_mac(machine_text);
  if (!machine) return Error{fmt::format("'{}': not a MAC address (52:54:00:ab:cd:ef)", machine_text)};
  const std::string reports = served + "/reports";
  std::unique_ptr<FileDescriptor> lock;
  TROY_TRY(lock_state(reports, lock));
  std::vector<std::string> removed;
  for (const std::string& path : {key_path(reports, *machine), key_path(reports, *machine) + ".changed",
                                  boot_state_path(served, *machine)}) {
    if (::unlink(path.c_str()) == 0) removed.push_back(path);
    else if (errno != ENOENT) return Error{os_error(path, "cannot remove")};
  }
  if (removed.empty()) return fmt::format("{}: no key or boot state held; nothing to forget", *machine);
  return fmt::format("{}: forgot {}; its next report enrolls the key it carries", *machine,
                     fmt::join(removed, ", "));
}

}  // namespace troy::cli
