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
//   reports/MACHINE.boot-local  "the next network boot goes to the local disk",
//                               left by a report, taken by the next boot
//   boot/cmdline                the payload's kernel arguments, one line
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

#include "result.h"

namespace troy::cli {

inline constexpr size_t kMaxReportBytes = 1 << 20;
inline constexpr size_t kMaxReportMessageBytes = 4096;
inline constexpr uint64_t kReportLogRotateBytes = 16 << 20;

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

// POST /cgi-bin/report: checks the JSON report, stores it, logs it and, unless
// the disk is half-updated, sends the machine's next boot to its local disk.
// 4xx with one line naming the field, and nothing written, when it is refused.
CgiResponse handle_report(const std::string& served, const CgiRequest& request,
                          std::chrono::system_clock::time_point now);

// GET /cgi-bin/boot?mac=..&platform=..: the iPXE script for one machine: its
// local disk once when a report left the flag, else the boot payload.
CgiResponse handle_boot(const std::string& served, const CgiRequest& request);

// A machine's newest line of the report log.
struct StatusRow {
  std::string machine;
  std::string address;
  std::string time;
  std::string result;
  std::string version;
  std::string message;
};

struct LabStatus {
  std::vector<StatusRow> machines;  // sorted by machine
  size_t skipped_lines = 0;         // log lines that are not a report line
};

// Reads reports/log.jsonl.1 then reports/log.jsonl (missing files: no lines).
Result<LabStatus> status_rows(const std::string& served);
// Columns MACHINE, ADDRESS, LAST REPORT (UTC), RESULT, DISK HOLDS, MESSAGE.
std::string format_status_table(const LabStatus& status);
// {"machines":[{"machine":..,"address":..,"time":..,"result":..,"version":..,"message":..}],"skipped_lines":N}
std::string format_status_json(const LabStatus& status);

}  // namespace troy::cli
