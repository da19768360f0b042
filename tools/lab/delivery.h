// Lab-scale delivery (issue 17, docs/delivery.md): when a whole lab boots
// together, the newest version's changed pieces go out once, by multicast,
// through udpcast (Debian's udp-sender / udp-receiver, as FOG and Clonezilla
// use), instead of once per machine over HTTP.
//
// udpcast only carries bytes. What it carries is a Troy stream (below): the
// pieces of the newest version's content index (docs/chunk-index.md) that
// differ from the version before it, each preceded by its piece number. The
// receiver checks every piece's SHA-256 against that index, which the signed
// manifest covers, before writing it at its offset on the disk; a piece that
// does not match is refused and never written. Whatever the stream did not
// bring (joined late, dropped as too slow, killed, power lost, a refused
// piece, a disk that held something else) the sync that follows fetches over
// HTTP Range requests, keeping every piece the disk already holds.
//
// The stream, all integers little-endian:
//   header (64 bytes): magic "TROYMCS1", format 1 (u32), piece_size (u32),
//     total_size (u64), record_count (u64), SHA-256 of the content index
//     file (32 bytes: which index, hence which version, the pieces are of);
//   record_count records: piece number (u64), then that piece's bytes
//     (the index's piece_length: the index frames the stream, so a tampered
//     length cannot desynchronise it), piece numbers increasing.
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
//   multicast version=v3 index=SHA256 sender=10.0.0.1/24 portbase=9000 ttl=1 wait=60
// Unsigned, and needs not be: it can only make a machine listen for a
// stream whose every piece is checked against the signed index.
struct MulticastSession {
  std::string version;       // the version streamed
  std::string index_sha256;  // of its content index, as the manifest lists it
  uint32_t sender = 0;       // the sender's IPv4 address, host order
  unsigned prefix = 24;      // and its subnet's prefix length
  unsigned portbase = 9000;  // udpcast's ports: portbase and portbase + 1
  unsigned ttl = 1;          // 1: the sender's subnet only (routers do not forward it)
  unsigned wait = 60;        // seconds a receiver waits for a session to start
};
inline constexpr const char* kDeliveryFile = "delivery";

Result<MulticastSession> parse_announcement(std::string_view text, const std::string& name);
std::string format_announcement(const MulticastSession& session);

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
  std::string interface;  // Multicast: where to listen
  std::string why;        // one line for the screen and the report
};

// Multicast when a session is announced for `newest` (its index the
// manifest's `newest_index_sha256`), this machine has an address on the
// sender's subnet (or the session's TTL lets routers forward it), and
// udp-receiver is there; HTTP otherwise, saying why.
DeliveryChoice choose_delivery(const std::optional<MulticastSession>& session, const std::string& newest,
                               const std::string& newest_index_sha256, const std::vector<LocalAddress>& addresses,
                               bool receiver_available);

// What a stream carried.
struct StreamStats {
  uint64_t records = 0;        // announced by the header
  uint64_t received = 0;       // pieces that matched the index and were written
  uint64_t refused = 0;        // pieces that did not match: not written
  uint64_t bytes_written = 0;
  bool complete = false;       // every record arrived
  std::string stopped;         // why the stream stopped early, "" when complete
};

// The pieces the stream of `index` carries: those that are not zeros and
// differ from `previous` (the version before; nullptr: every one).
std::vector<uint64_t> pieces_to_stream(const ChunkIndex& index, const ChunkIndex* previous);

// Writes the stream to `fd` (a pipe to udp-sender), reading each piece from
// the chunk store under `store_root` and checking it against the index first.
Result<StreamStats> write_stream(int fd, const ChunkIndex& index, const Sha256& index_sha,
                                 const std::vector<uint64_t>& pieces, const std::string& store_root);

// Reads a stream from `fd` onto `disk`: each piece written only when its
// SHA-256 is the index's. A header of another index, piece size or disk
// size is an error (nothing written); a refused piece is counted, said
// through `say`, and skipped; a stream cut short ends with complete=false.
Result<StreamStats> receive_stream(int fd, const ChunkIndex& index, const Sha256& index_sha, SyncDisk& disk,
                                   const std::function<void(const std::string&)>& say);

// "412 pieces received (412 MiB), 0 refused".
std::string describe(const StreamStats& stats);

// udp-receiver's arguments for a session on `interface`.
std::vector<std::string> receiver_command(const MulticastSession& session, const std::string& interface);

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

// The server's side (troy lab multicast): one session of the newest
// version in `served` (its manifest, content indexes and chunk store):
// writes SERVED/delivery for `session` (version, index, portbase... filled
// in here from the manifest), then feeds udp-sender until the stream ends.
Result<StreamStats> send_session(const std::string& served, MulticastSession session, const SenderOptions& options,
                                 const std::string& log_path, const std::function<void(const std::string&)>& say);

// The payload's side, from troy update (update.cpp): reads the served
// announcement, decides, and when multicast is chosen receives the stream
// onto the disk. nullopt: HTTP was chosen (why is said). A failed session is
// not an error of the update: it is said, and the sync completes over HTTP.
struct MulticastReceive {
  const Manifest& manifest;
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
