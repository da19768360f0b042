// Lab-scale delivery (issue 17, docs/delivery.md): when a whole lab boots
// together, what the newest version changes goes out once, by multicast,
// through udpcast (Debian's udp-sender / udp-receiver, as FOG and Clonezilla
// use), instead of once per machine over HTTP.
//
// udpcast only carries bytes. What it carries is a Troy stream (below): for
// each piece where the newest version's content index (docs/chunk-index.md)
// differs from the version before it (the base), the 4 KiB units that
// differ, as runs. A machine whose disk holds the base exactly reads the
// piece from its disk, lays the runs over it, and writes the runs only when
// the whole piece's SHA-256 is the signed index's; a piece that does not
// match is refused and never written. Whatever the stream did not bring
// (dropped as too slow, killed, a refused piece) the delta path that follows
// fetches over HTTP: its fingerprint check takes the pieces the session
// wrote as done and reads only the rest of the delta.
//
// The stream, all integers little-endian:
//   header (96 bytes): magic "TROYMCS2", format 2 (u32), piece_size (u32),
//     total_size (u64), record_count (u64), SHA-256 of the newest version's
//     content index file, SHA-256 of the base's (which patch onto which);
//   record_count records, piece numbers increasing, each: piece number
//     (u64), run count (u32), 0 (u32), run count x {offset (u32), length
//     (u32), kind (u32): 0 bytes follow, 1 zeros (no bytes)}, then the bytes
//     of the kind-0 runs in order. Runs lie inside the piece on 4 KiB
//     boundaries, increasing, not overlapping: a record that breaks this
//     stops the stream (it can no longer be framed).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "chunk_index.h"
#include "digest.h"
#include "manifest.h"
#include "result.h"
#include "sync.h"

namespace troy::cli {

// The served file `delivery` that `troy lab multicast` writes while it runs:
// one line, e.g.
//   multicast version=v3 base=v2 index=SHA256 sender=10.0.0.1/24 portbase=9000 ttl=1 wait=60
// one line per sender (one per interface, hence per subnet: docs/delivery.md).
// Unsigned, and needs not be: it can only make a machine listen for a
// stream whose every piece is checked against the signed index.
struct MulticastSession {
  std::string version;       // the version streamed
  std::string base;          // the version it patches (the one before)
  std::string index_sha256;  // of its content index, as the manifest lists it
  uint32_t sender = 0;       // the sender's IPv4 address, host order
  unsigned prefix = 24;      // and its subnet's prefix length
  unsigned portbase = 9000;  // udpcast's ports: portbase and portbase + 1
  unsigned ttl = 1;          // 1: the sender's subnet only (routers do not forward it)
  unsigned wait = 60;        // seconds a receiver waits for a session to start
};
inline constexpr const char* kDeliveryFile = "delivery";

// One session per line; an empty file is no session.
Result<std::vector<MulticastSession>> parse_announcement(std::string_view text, const std::string& name);
std::string format_announcement(const MulticastSession& session);  // one line

// One of this machine's IPv4 addresses: the interface, address and prefix.
struct LocalAddress {
  std::string interface;
  uint32_t address = 0;  // host order
  unsigned prefix = 0;
};
std::vector<LocalAddress> local_addresses();
// "10.0.0.1" -> host order; nullopt for anything else.
std::optional<uint32_t> parse_ipv4(std::string_view text);
std::string format_ipv4(uint32_t address);

enum class DeliveryPath { Multicast, Http };
struct DeliveryChoice {
  DeliveryPath path = DeliveryPath::Http;
  std::string interface;     // Multicast: where to listen
  MulticastSession session;  // Multicast: the one listened to
  std::string why;           // one line for the screen and the report
};

// Multicast when a session is announced for `newest` (its index the
// manifest's `newest_index_sha256`) patching the version the disk holds
// (`held`), this machine has an address on its sender's subnet (or the
// session's TTL lets routers forward it), and udp-receiver is there; HTTP
// otherwise, saying why. Of several sessions, the one on this machine's subnet.
DeliveryChoice choose_delivery(const std::vector<MulticastSession>& sessions, const std::string& newest,
                               const std::string& newest_index_sha256, const std::string& held,
                               const std::vector<LocalAddress>& addresses, bool receiver_available);

// What a stream carried.
struct StreamStats {
  uint64_t records = 0;        // announced by the header
  uint64_t received = 0;       // pieces that matched the index and were written
  uint64_t refused = 0;        // pieces that did not match: not written
  uint64_t bytes_streamed = 0; // bytes of the runs (what the network carried)
  uint64_t bytes_written = 0;  // to the disk
  std::vector<uint64_t> missing;  // receiver: changed pieces not written (HTTP brings them)
  bool started = false;        // receiver: a session's header arrived
  bool complete = false;       // sender: every record sent; receiver: every changed piece written
  std::string stopped;         // why the stream stopped early, "" when it did not
};

// The two content indexes a session patches between: the newest version's
// and its base's, each with its file's SHA-256 (the manifest's).
struct StreamIndexes {
  const ChunkIndex& index;
  Sha256 index_sha{};
  const ChunkIndex& base;
  Sha256 base_sha{};
};

// The pieces a stream carries: those whose content differs between the
// base and the newest version (pieces that become zeros included); empty
// when the two do not have the same piece size and disk size.
std::vector<uint64_t> pieces_to_stream(const ChunkIndex& index, const ChunkIndex& base);

// A run of 4 KiB units where a piece differs from its base.
struct StreamRun {
  uint32_t offset = 0;
  uint32_t length = 0;
  bool zeros = false;  // the new content is zeros: no bytes are sent
};
// Where `after` differs from `before`, by 4 KiB unit, adjacent units of the
// same kind merged. `before` empty: unknown, the whole piece.
std::vector<StreamRun> changed_runs(std::span<const std::byte> before, std::span<const std::byte> after);

// Writes the stream to `fd` (a pipe to udp-sender), reading each piece and
// its base from the chunk store under `store_root` and checking both
// against their indexes first (a base piece missing from the store: the
// whole piece is sent).
Result<StreamStats> write_stream(int fd, const StreamIndexes& indexes, const std::vector<uint64_t>& pieces,
                                 const std::string& store_root);

// Reads a stream from `fd` onto `disk`, which holds the base: each piece's
// runs laid over the disk's piece, written only when the piece's SHA-256 is
// the index's. A header of other indexes, piece size or disk size is an
// error (nothing written); a refused piece is counted, said through `say`,
// and skipped; `missing` lists the changed pieces (from the two signed
// indexes, not from the stream) that were not written.
Result<StreamStats> receive_stream(int fd, const StreamIndexes& indexes, SyncDisk& disk,
                                   const std::function<void(const std::string&)>& say);

// "412 of 412 pieces received (3.1 MiB streamed), 0 refused".
std::string describe(const StreamStats& stats);

// udpcast's timers (docs/delivery.md, "Where a session's time goes"): how
// often the sender re-checks whether to start (and says hello again), and
// how long a receiver lingers after the end for a lost final ACK.
inline constexpr unsigned kSenderHelloIntervalMs = 200;
inline constexpr unsigned kReceiverExitWaitMs = 100;

// udp-receiver's arguments for a session on `interface`.
std::vector<std::string> receiver_command(const MulticastSession& session, const std::string& interface);

// udp-sender's --max-bitrate as udpcast parses it (rate-limit.c: strtoul,
// then an optional k or m; any other unit is fatal, and the result goes into
// an int): bits per second, or nullopt for anything else, for 0 and above
// kMaxBitrate. Checked before udp-sender sees it, so a typo never starts a
// session that dies at once or sends without the flood cap.
inline constexpr uint64_t kMaxBitrate = 2000000000;
inline constexpr const char* kBitrateForm = "a whole number of bits per second, with k or m, from 1k to 2000m (e.g. 600m)";
std::optional<uint64_t> parse_max_bitrate(std::string_view text);

// The largest --min-receivers and the longest waits (--min-wait, --max-wait,
// --receiver-wait) troy lab multicast and lab.conf take.
inline constexpr unsigned kMaxMinReceivers = 10000;
inline constexpr unsigned kMaxSessionWaitSeconds = 3600;

// udp-sender's arguments for a session (stream on its standard input).
struct SenderOptions {
  std::string interface;
  unsigned min_receivers = 1;  // start once this many joined ...
  unsigned min_wait = 10;      // ... and this many seconds passed since the first (the rest of the lab boots)
  unsigned max_wait = 60;      // start anyway this long after the first joined
  std::string max_bitrate;     // e.g. "600m": below the slowest link, so no switch port drops
  unsigned retries_until_drop = 30;  // a receiver silent this long is dropped (it completes over HTTP)
};
std::vector<std::string> sender_command(const MulticastSession& session, const SenderOptions& options);

// Runs `command` (argv[0] looked up in PATH) with a pipe to it:
// `child_writes` its standard output is the pipe (we read), else its
// standard input is (we write). `use` gets our end. Standard error goes to
// `log_path` (or /dev/null when empty). The child is killed if `use`
// returns before it ends; its exit status is an error only when `use`
// succeeded and the child failed.
Result<StreamStats> run_piped(const std::vector<std::string>& command, bool child_writes, const std::string& log_path,
                              const std::function<Result<StreamStats>(int fd)>& use);

// What the server's next session sends: the newest version in `served`
// against the one before. nullopt (with why) when there is nothing to patch
// between: one version only, or a base without a content index.
struct SessionContent {
  std::string version, base;
  ChunkIndex index, base_index;
  Sha256 index_sha{}, base_sha{};
  std::vector<uint64_t> pieces;
  uint64_t run_bytes = 0;  // bytes of the runs the stream carries
  StreamIndexes indexes() const { return {index, index_sha, base_index, base_sha}; }
};
Result<std::optional<SessionContent>> session_content(const std::string& served, std::string& why_none);

// SERVED/delivery: one line per session, written whole (renamed into place).
Result<void> write_announcement(const std::string& served, const std::vector<MulticastSession>& sessions);

// The server's side (troy lab multicast): one session of `content` on
// `session`'s interface: feeds udp-sender until the stream ends.
Result<StreamStats> send_session(const std::string& served, const SessionContent& content,
                                 const MulticastSession& session, const SenderOptions& options,
                                 const std::string& log_path);

// The payload's side, from troy update (update.cpp), for a disk that holds
// the version before the newest exactly: reads the served announcement,
// decides, and when multicast is chosen receives the stream onto the disk.
// nullopt: HTTP was chosen (why is said). A failed session is not an error
// of the update: it is said, and the delta path completes over HTTP.
struct MulticastReceive {
  const Manifest& manifest;
  size_t held = 0;  // the version the disk holds (an index into the manifest's)
  std::string device;
  // A file listed in the manifest, into the work folder, checked.
  std::function<Result<std::string>(const std::string& what, const ManifestVersion::SignedFile& file)> fetch;
  std::optional<std::string> announcement;  // the served `delivery` file, nullopt when there is none
  std::string log_path;                     // udp-receiver's messages
  std::function<void(const std::string&)> say;
  // Called once multicast is chosen, before anything is written; an error
  // means HTTP (nothing written here).
  std::function<Result<void>()> confirm;
};
std::optional<StreamStats> receive_if_announced(const MulticastReceive& receive);

// True when `program` is an executable in PATH.
bool in_path(const std::string& program);

}  // namespace troy::cli
