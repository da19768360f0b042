// Teacher check-in (issue 15, docs/checkin.md): the teacher machine's
// differencing child (what the teacher changed on top of the newest
// published version) brought to the lab server, checked, and published as
// the next version by the admin.
//
//   machine (payload or by hand)       server (CGI, www-data)           admin (root)
//   troy checkin CHILD            -->  /cgi-bin/checkin                 troy lab checkin list
//     parent id checked first            teacher tag, HMAC, size          troy lab checkin publish ENTRY
//     sha256 of the file                 body streamed to INBOX             re-checks, then the same code
//     POST, X-Troy-Checkin header        sha256, parent id, renamed         as troy publish, with the key
//
// The CGI only stores: it never reads the lab's signing key, so a teacher
// machine (or anyone holding its key) can put a file in the inbox, never a
// version in front of the classroom. Only root's `troy lab checkin publish`
// signs. The inbox is outside the served directory (nothing in it is served).
//
// The request: POST /cgi-bin/checkin with the child as the body
// (Content-Length required) and the header
//
//   X-Troy-Checkin: MACHINE COUNTER SIZE SHA256 HMAC
//
// HMAC is HMAC-SHA256 with the machine's enrolled report key (server.h:
// learned from its reports, never from a check-in) over
// "troy-checkin 1 MACHINE COUNTER SIZE SHA256"; COUNTER shares the report
// counter (machine_state.h), so a replayed check-in is refused; SIZE must
// be the Content-Length, SHA256 the body's, checked on arrival.
//
// The inbox: ENTRY.json (machine, seat, received, size, sha256, parent
// version and id) written first, then ENTRY.EXT (.avhdx or .vhd) renamed into
// place from a temporary name once every check passed: an entry is the
// image file; a .json without its image is an upload cut short and is
// ignored (and replaced by the machine's next upload).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "chain.h"
#include "console.h"
#include "hosts.h"
#include "layer.h"
#include "manifest.h"
#include "result.h"
#include "server.h"

namespace troy::cli {

inline constexpr const char* kDefaultInbox = "/var/lib/troy/inbox";
inline constexpr const char* kCheckinHeader = "X-Troy-Checkin";
// Room a child may take beyond the disk's virtual size: its BAT, log and
// metadata (a VHDX's log is 1 MiB by default; a VHD's BAT is 4 bytes per
// 2 MiB). A larger body is refused before a byte of it is read.
inline constexpr uint64_t kCheckinOverheadBytes = uint64_t{1} << 30;
inline constexpr uint64_t kMinCheckinBytes = 512;
// Free space left in the inbox's file system after an upload.
inline constexpr uint64_t kInboxReserveBytes = uint64_t{1} << 30;

// ---- decisions (pure) ----

// Only a machine whose hosts line carries +teacher may check in.
Result<void> may_check_in(const Hosts& hosts, const std::string& machine);

// The body's size: at least kMinCheckinBytes (else 400), at most the
// disk's virtual size plus kCheckinOverheadBytes (else 413), and room for it
// plus kInboxReserveBytes in the inbox's `free_bytes` (else 507). nullopt
// when it passes; else the HTTP status and the line.
struct CheckinRefusal {
  std::string status;  // "413 Payload Too Large"
  std::string line;
};
std::optional<CheckinRefusal> checkin_size_refusal(uint64_t size, uint64_t disk_size, uint64_t free_bytes);

// The child must be a differencing image whose parent id is the newest
// published version's image id, of the lab's virtual size. `path` names it.
Result<void> check_child_of_newest(const Layer& child, const Manifest& manifest, const std::string& path);

// What the HMAC covers, and the header parsed.
std::string checkin_signed_text(const std::string& machine, uint64_t counter, uint64_t size, const std::string& sha256);
struct CheckinHeader {
  std::string machine;  // normalized
  uint64_t counter = 0;
  uint64_t size = 0;
  std::string sha256;  // 64 lower-case hex digits
  std::string hmac;    // 64 lower-case hex digits
};
Result<CheckinHeader> parse_checkin_header(std::string_view text);
std::string format_checkin_header(const CheckinHeader& header);

// "52-54-00-12-34-56-20261206T092700Z": the inbox entry's name.
std::string checkin_entry_name(const std::string& machine, std::chrono::system_clock::time_point received);

// ---- the server's side ----

struct CheckinServer {
  std::string served;  // TROY_SERVED: its manifest and reports/keys
  std::string inbox;   // TROY_INBOX
  std::string hosts;   // TROY_HOSTS
};

// POST /cgi-bin/checkin: the answer, having read the body from `body_fd`
// (at most Content-Length bytes, streamed through a 1 MiB buffer). Refused
// requests keep nothing: 403 (not a teacher, not authentic), 413/507
// (size), 400 (body short or its sha256 not the header's), 409 (another
// check-in is being received), 422 (not a child of the newest version).
CgiResponse handle_checkin(const CheckinServer& server, const CgiRequest& request, const std::string& header,
                           int body_fd, std::chrono::system_clock::time_point now);

struct InboxEntry {
  std::string name;   // ENTRY
  std::string image;  // INBOX/ENTRY.avhdx
  std::string machine;
  std::string seat;
  std::string received;
  uint64_t size = 0;
  std::string sha256;
  std::string parent_version;
  std::string parent_id;
};

// The entries, oldest first; a .json without its image is skipped.
Result<std::vector<InboxEntry>> list_inbox(const std::string& inbox);
Result<InboxEntry> find_inbox_entry(const std::string& inbox, const std::string& name);
std::string format_inbox_table(const std::vector<InboxEntry>& entries);

// The admin's side: CHILD (an inbox entry's image, or a file on a share)
// opened over the newest version as the served directory holds it (its
// content index and the chunk store: the server keeps no base image), after
// check_child_of_newest: the chain troy publish reads.
Result<Chain> open_child_over_newest(const std::string& child, const Manifest& manifest, const std::string& served);

// SHA-256 of a whole file, streamed.
Result<std::string> file_sha256(const std::string& path);

// ---- the machine's side ----

struct CheckinUpload {
  std::string server;  // http://10.0.0.1:8080
  std::string child;   // the file sent
  std::string machine;
  std::vector<uint8_t> key;  // the machine's report key (32 bytes)
  uint64_t counter = 0;      // the next report counter, saved on the disk before
  std::string sha256;        // of `child`, from file_sha256
  uint64_t size = 0;
};
// Streams the file as the body (never whole in memory); the server's
// answer line, or an error with its HTTP status and line.
Result<std::string> upload_checkin(const CheckinUpload& upload, const Console& console);

}  // namespace troy::cli
