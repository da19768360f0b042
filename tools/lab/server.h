// The lab server's side of the boot payload, as pure functions over a CGI
// request (lighttpd runs `troy lab report` and `troy lab boot` for
// /cgi-bin/report and /cgi-bin/boot, see pxe/): a machine's report, the
// per-machine iPXE script, and the table of what every machine last said.
// Nothing here throws or keeps state between calls; files live under the
// served directory SERVED:
//
//   reports/MACHINE.json        the machine's newest report, as it sent it plus
//                               "received" and "address"
//   reports/log.jsonl           one JSON line per report: time, machine, address,
//                               result, version, message (log.jsonl.1: the one
//                               before, rotated at 16 MiB; log.lock: its lock)
//   reports/MACHINE.boot        the newest accepted report's result, version and
//                               time: what /cgi-bin/boot decides on
//   reports/keys/MACHINE        the machine's report key, learned from its
//                               first report (trust on first use), and the
//                               last report_counter accepted
//   reports/keys/MACHINE.changed  a report signed with another key was refused
//   reports/rate                per-address report buckets (rate limit)
//   reports/rate.progress       the same for progress reports
//   reports/status/MACHINE.json the machine's live status (status_page.h)
//   status/index.html           the status page, regenerated after each report
//   reports/state.lock          held while a report is taken
//   boot/cmdline                the payload's kernel arguments, one line
//   manifest                    its last version is the newest (boot decision)
//
// MACHINE is the MAC address in lower case with dashes: 52-54-00-00-00-01.
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

namespace troy::cli {

inline constexpr size_t kMaxReportBytes = 1 << 20;
inline constexpr size_t kMaxReportMessageBytes = 4096;
inline constexpr uint64_t kReportLogRotateBytes = 16 << 20;  // log.jsonl + log.jsonl.1: at most 32 MiB
// Per client address: a burst of kReportBurst reports, then one per
// kReportRefillSeconds; more is answered 429. At most kMaxRateAddresses
// addresses are remembered (a machine reports once or twice per boot).
inline constexpr int kReportBurst = 30;
inline constexpr int kReportRefillSeconds = 10;
inline constexpr size_t kMaxRateAddresses = 4096;
// Progress reports (result "progress") have their own buckets per address
// (reports/rate.progress): a machine sends at most one per 3 s (update.cpp),
// so it never runs short, and a flood costs at most one per 2 s.
inline constexpr int kProgressBurst = 30;
inline constexpr int kProgressRefillSeconds = 2;
// Reports are kept for at most this many machines (one MACHINE.json each,
// the newest, at most kMaxReportBytes): a new machine past it is answered 507.
inline constexpr size_t kMaxReportMachines = 1024;
// After an error report, the machine's disk (unchanged, or at a complete
// version) is booted for this long; its next power-on after it tries again.
inline constexpr int64_t kBootLocalAfterErrorSeconds = 15 * 60;
// A native-VHD-boot lab that resets the student's child at every boot
// (manifest.h: layout vhdboot ... reset): a machine at the newest version
// boots its local disk only this long after its report (the payload's own
// reboot), the payload at any later boot (a student's restart, the next
// morning), which resets the child. Requests still change nothing.
inline constexpr int64_t kVhdBootLocalAfterReportSeconds = 5 * 60;

// What a CGI program learns from its environment and standard input.
struct CgiRequest {
  std::string method;                         // REQUEST_METHOD
  std::string query;                          // QUERY_STRING
  std::optional<std::string> content_length;  // CONTENT_LENGTH; nullopt when unset
  std::string remote_address;                 // REMOTE_ADDR
  std::string host;                           // HTTP_HOST: the Host header, untrusted
  std::string server_address;                 // SERVER_ADDR
  std::string server_port;                    // SERVER_PORT
  std::string body;                           // standard input
};

struct CgiResponse {
  std::string status = "200 OK";
  std::string content_type = "text/plain";
  std::string body;
};

// The bytes a CGI program prints: "Status: ...\r\nContent-Type: ...\r\n\r\n" and the body.
std::string cgi_output(const CgiResponse& response);

// "52:54:00:AB:CD:EF" or "52-54-00-ab-cd-ef" -> "52-54-00-ab-cd-ef"; nullopt
// for anything else (a file name is made of it).
std::optional<std::string> normalize_mac(std::string_view text);

// The answer refusing a report before its body is read (not a POST;
// CONTENT_LENGTH missing, not a number, or over kMaxReportBytes), or nullopt.
std::optional<CgiResponse> refuse_report_early(const CgiRequest& request);
// CONTENT_LENGTH as a byte count once refuse_report_early accepted it.
std::optional<size_t> parse_content_length(std::string_view text);

// POST /cgi-bin/report[?hmac=HEX]: checks the JSON report, authenticates it
// (HMAC-SHA256 over the exact body with the machine's key: the key enrolled
// by its first report carrying machine_key; report_counter must grow), stores
// it, logs it, and keeps its result and version for the boot decision.
// 4xx with one line naming the field, and nothing written, when it is
// refused: 403 (not authentic: one "refused" line in the log), 429 (rate).
// Machines that keep no key (no room on their disk) send no HMAC: accepted
// while no key is enrolled for them, and logged as auth "none".
// A progress report (result "progress", with state, percent and detail; see
// status_page.h) is authenticated the same way but only updates the
// machine's status record and its boot state (the payload until a final
// report), not MACHINE.json or the log. Each accepted report marks the status
// page stale; the caller answers, then calls refresh_status_page
// (status_page.h) with the hosts file for the seats.
CgiResponse handle_report(const std::string& served, const CgiRequest& request,
                          std::chrono::system_clock::time_point now);

// GET /cgi-bin/boot?mac=..&platform=..: the iPXE script for one machine: its
// local disk when its newest accepted report says it holds the newest
// version (or an error within kBootLocalAfterErrorSeconds), else the payload.
// A machine the hosts file `hosts` tags +teacher (hosts.h) gets a menu: the
// same script, or the payload with troy.then=checkin (docs/checkin.md).
CgiResponse handle_boot(const std::string& served, const CgiRequest& request,
                        std::chrono::system_clock::time_point now = std::chrono::system_clock::now(),
                        const std::string& hosts = "");

// A request other than a report that a machine signs with its enrolled key
// (a teacher's check-in, checkin.h): `hmac` over `message` must verify with
// the key enrolled for `machine` (by its reports: no trust on first use
// here), and `counter` must be above the last one accepted, which it then
// becomes (under reports/state.lock). nullopt: accepted; else the refusal.
Result<std::optional<std::string>> authenticate_signed_request(const std::string& served, const std::string& machine,
                                                               std::string_view message, const std::string& hmac,
                                                               uint64_t counter);

// A machine's newest line of the report log.
struct StatusRow {
  std::string machine;
  std::string address;
  std::string time;
  std::string result;
  std::string version;
  std::string message;
  std::string auth;  // the line's: ok, new-key, none, refused; "" in lines of an older troy
  // The machine's key as the server holds it: "none" (no key enrolled),
  // "new" (enrolled less than kNewKeyDays ago), "ok", or "CHANGED" (a report
  // signed with another key was refused: a replaced disk, or an impostor).
  std::string key;
};

inline constexpr int64_t kNewKeyDays = 7;

struct LabStatus {
  std::vector<StatusRow> machines;  // sorted by machine
  size_t skipped_lines = 0;         // log lines that are not a report line
};

// Reads reports/log.jsonl.1 then reports/log.jsonl (missing files: no lines).
Result<LabStatus> status_rows(const std::string& served,
                              std::chrono::system_clock::time_point now = std::chrono::system_clock::now());

// troy lab forget MACHINE: drops the machine's enrolled key (its next report
// enrolls the key it carries: a replaced disk) and its boot state (it boots
// the payload next). Returns what was removed, in words.
Result<std::string> forget_machine(const std::string& served, const std::string& machine);
// Columns MACHINE, ADDRESS, LAST REPORT (UTC), RESULT, DISK HOLDS, KEY, MESSAGE.
std::string format_status_table(const LabStatus& status);
// {"machines":[{"machine":..,"address":..,"time":..,"result":..,"version":..,"message":..,"auth":..,"key":..}],
//  "skipped_lines":N}
std::string format_status_json(const LabStatus& status);

}  // namespace troy::cli
