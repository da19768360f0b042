#include "delivery.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include <fmt/format.h>

#include "buffers.h"
#include "progress.h"

namespace troy::cli {
namespace {

constexpr char kStreamMagic[8] = {'T', 'R', 'O', 'Y', 'M', 'C', 'S', '2'};
constexpr uint32_t kStreamFormat = 2;
constexpr size_t kHeaderSize = 96;
constexpr size_t kRunEntrySize = 12;

void put_u32(std::byte* at, uint32_t value) {
  for (int i = 0; i < 4; i++) at[i] = std::byte(value >> (8 * i));
}
void put_u64(std::byte* at, uint64_t value) {
  for (int i = 0; i < 8; i++) at[i] = std::byte(value >> (8 * i));
}
uint32_t get_u32(const std::byte* at) {
  uint32_t value = 0;
  for (int i = 0; i < 4; i++) value |= uint32_t(at[i]) << (8 * i);
  return value;
}
uint64_t get_u64(const std::byte* at) {
  uint64_t value = 0;
  for (int i = 0; i < 8; i++) value |= uint64_t(at[i]) << (8 * i);
  return value;
}

Result<void> write_all(int fd, std::span<const std::byte> bytes) {
  while (!bytes.empty()) {
    const ssize_t done = ::write(fd, bytes.data(), bytes.size());
    if (done < 0 && errno == EINTR) continue;
    if (done <= 0) return Error{fmt::format("writing the multicast stream: {}", std::strerror(errno))};
    bytes = bytes.subspan(static_cast<size_t>(done));
  }
  return success();
}

// Fills `out`; false at the end of the stream (cut short, or the sender gone).
Result<bool> read_all(int fd, std::span<std::byte> out) {
  size_t have = 0;
  while (have < out.size()) {
    const ssize_t done = ::read(fd, out.data() + have, out.size() - have);
    if (done < 0 && errno == EINTR) continue;
    if (done < 0) return Error{fmt::format("reading the multicast stream: {}", std::strerror(errno))};
    if (done == 0) return false;
    have += static_cast<size_t>(done);
  }
  return true;
}

std::optional<unsigned> parse_number(std::string_view text, unsigned low, unsigned high) {
  unsigned value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc{} || end != text.data() + text.size() || value < low || value > high) return std::nullopt;
  return value;
}

bool is_hex64(std::string_view text) {
  return text.size() == 64 && text.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

uint32_t mask_of(unsigned prefix) { return prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix); }

Result<void> set_field(MulticastSession& session, std::string_view key, std::string_view value,
                       const std::string& name) {
  const auto bad = [&](const char* rule) {
    return Error{fmt::format("{}: field {}: '{}' is not {}", name, key, value, rule)};
  };
  if (key == "version" || key == "base") {
    if (value.empty()) return bad("a version name");
    (key == "version" ? session.version : session.base) = value;
  } else if (key == "index") {
    if (!is_hex64(value)) return bad("64 lower-case hex digits");
    session.index_sha256 = value;
  } else if (key == "sender") {
    const size_t slash = value.find('/');
    const auto address = parse_ipv4(value.substr(0, slash));
    const auto prefix = slash == std::string_view::npos ? std::nullopt : parse_number(value.substr(slash + 1), 1, 32);
    if (!address || !prefix) return bad("an IPv4 address and prefix (10.0.0.1/24)");
    session.sender = *address;
    session.prefix = *prefix;
  } else if (key == "portbase" || key == "ttl" || key == "wait") {
    const bool port = key == "portbase";
    const auto number = parse_number(value, 1, port ? 65534 : key == "ttl" ? 255 : 3600);
    if (!number) return bad(port ? "a port from 1 to 65534" : key == "ttl" ? "from 1 to 255" : "from 1 to 3600 s");
    (port ? session.portbase : key == "ttl" ? session.ttl : session.wait) = *number;
  } else {
    return Error{fmt::format("{}: unknown field '{}'", name, key)};
  }
  return success();
}

}  // namespace

std::optional<uint32_t> parse_ipv4(std::string_view text) {
  in_addr address{};
  if (text.size() > 15 || ::inet_pton(AF_INET, std::string(text).c_str(), &address) != 1) return std::nullopt;
  return ntohl(address.s_addr);
}

std::string format_ipv4(uint32_t address) {
  return fmt::format("{}.{}.{}.{}", address >> 24, (address >> 16) & 255, (address >> 8) & 255, address & 255);
}

namespace {

Result<MulticastSession> parse_session_line(std::string_view text, const std::string& name) {
  MulticastSession session;
  size_t at = 0;
  bool first = true;
  while (at < text.size()) {
    const size_t end = std::min(text.find(' ', at), text.size());
    const std::string_view word = text.substr(at, end - at);
    at = end + 1;
    if (word.empty()) continue;
    if (first) {
      if (word != "multicast") return Error{fmt::format("{}: starts with '{}', not 'multicast'", name, word)};
      first = false;
      continue;
    }
    const size_t equals = word.find('=');
    if (equals == std::string_view::npos) return Error{fmt::format("{}: '{}' is not key=value", name, word)};
    TROY_TRY(set_field(session, word.substr(0, equals), word.substr(equals + 1), name));
  }
  if (session.version.empty() || session.base.empty() || session.index_sha256.empty() || session.sender == 0)
    return Error{fmt::format("{}: needs version=, base=, index= and sender=", name)};
  return session;
}

}  // namespace

Result<std::vector<MulticastSession>> parse_announcement(std::string_view text, const std::string& name) {
  // A few short lines; more (or a longer file) is not ours.
  if (text.size() > 4096) return Error{fmt::format("{}: {} bytes, an announcement is a few short lines", name, text.size())};
  std::vector<MulticastSession> sessions;
  size_t line = 0;
  while (!text.empty()) {
    const size_t end = std::min(text.find('\n'), text.size());
    std::string_view words = text.substr(0, end);
    text.remove_prefix(std::min(end + 1, text.size()));
    line++;
    if (!words.empty() && words.back() == '\r') words.remove_suffix(1);
    if (words.find_first_not_of(' ') == std::string_view::npos) continue;
    TROY_ASSIGN(session, parse_session_line(words, fmt::format("{} line {}", name, line)));
    sessions.push_back(session);
  }
  return sessions;
}

std::string format_announcement(const MulticastSession& session) {
  return fmt::format("multicast version={} base={} index={} sender={}/{} portbase={} ttl={} wait={}\n",
                     session.version, session.base, session.index_sha256, format_ipv4(session.sender), session.prefix, session.portbase, session.ttl,
                     session.wait);
}

std::vector<LocalAddress> local_addresses() {
  std::vector<LocalAddress> found;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return found;
  for (const ifaddrs* entry = list; entry != nullptr; entry = entry->ifa_next) {
    if (entry->ifa_addr == nullptr || entry->ifa_addr->sa_family != AF_INET || entry->ifa_netmask == nullptr) continue;
    const uint32_t address = ntohl(reinterpret_cast<const sockaddr_in*>(entry->ifa_addr)->sin_addr.s_addr);
    const uint32_t mask = ntohl(reinterpret_cast<const sockaddr_in*>(entry->ifa_netmask)->sin_addr.s_addr);
    if ((address >> 24) == 127) continue;
    found.push_back({entry->ifa_name, address, static_cast<unsigned>(__builtin_popcount(mask))});
  }
  ::freeifaddrs(list);
  return found;
}

namespace {

// Where `session` is received on this machine: "" when nowhere.
std::string listening_interface(const MulticastSession& session, const std::vector<LocalAddress>& addresses) {
  const uint32_t mask = mask_of(session.prefix);
  for (const LocalAddress& local : addresses)
    if ((local.address & mask) == (session.sender & mask)) return local.interface;
  return {};
}

std::string subnet_of(const MulticastSession& session) {
  return fmt::format("{}/{}", format_ipv4(session.sender & mask_of(session.prefix)), session.prefix);
}

}  // namespace

DeliveryChoice choose_delivery(const std::vector<MulticastSession>& sessions, const std::string& newest,
                               const std::string& newest_index_sha256, const std::string& held,
                               const std::vector<LocalAddress>& addresses, bool receiver_available) {
  DeliveryChoice choice;
  if (sessions.empty()) {
    choice.why = "no multicast session announced: the pieces come over HTTP";
    return choice;
  }
  const MulticastSession& any = sessions.front();
  if (any.version != newest || any.index_sha256 != newest_index_sha256) {
    choice.why = fmt::format("the multicast session sends {}, not {} (the newest signed version, or another "
                             "index of it): the pieces come over HTTP",
                             any.version, newest);
    return choice;
  }
  if (any.base != held) {
    choice.why = fmt::format("the multicast session patches {} and this disk holds {}: the pieces come over HTTP",
                             any.base, held.empty() ? std::string("no version exactly") : held);
    return choice;
  }
  if (!receiver_available) {
    choice.why = "udp-receiver is not in this payload: the pieces come over HTTP";
    return choice;
  }
  for (const MulticastSession& session : sessions) {
    const std::string interface = listening_interface(session, addresses);
    if (interface.empty()) continue;
    choice = {DeliveryPath::Multicast, interface, session,
              fmt::format("multicast session for {} from {} on {}: receiving it, then HTTP for anything it did not "
                          "bring", newest, format_ipv4(session.sender), interface)};
    return choice;
  }
  std::string subnets;
  for (const MulticastSession& session : sessions) subnets += (subnets.empty() ? "" : ", ") + subnet_of(session);
  for (const MulticastSession& session : sessions) {
    if (session.ttl <= 1 || addresses.empty()) continue;
    // The admin routes multicast between subnets (TTL above 1): listen on
    // the interface of the default route's subnet, the first address.
    choice = {DeliveryPath::Multicast, addresses.front().interface, session,
              fmt::format("multicast session for {} from {} (another subnet, routed: TTL {}) on {}", newest,
                          subnet_of(session), session.ttl, addresses.front().interface)};
    return choice;
  }
  choice.why = fmt::format("the multicast sessions are on {} and this machine is not (TTL 1: routers do not forward "
                           "them): the pieces come over HTTP",
                           subnets);
  return choice;
}

std::vector<uint64_t> pieces_to_stream(const ChunkIndex& index, const ChunkIndex& base) {
  std::vector<uint64_t> pieces;
  if (base.piece_size != index.piece_size || base.total_size != index.total_size) return pieces;
  for (size_t i = 0; i < index.piece_count(); i++)
    if (base.pieces[i] != index.pieces[i]) pieces.push_back(i);
  return pieces;
}

std::vector<StreamRun> changed_runs(std::span<const std::byte> before, std::span<const std::byte> after) {
  const uint32_t length = static_cast<uint32_t>(after.size());
  if (before.size() != after.size()) return {StreamRun{0, length, is_zero_bytes(after)}};
  std::vector<StreamRun> runs;
  for (uint32_t start = 0; start < length; start += kChunkUnit) {
    const uint32_t unit = std::min<uint32_t>(kChunkUnit, length - start);
    const auto now = after.subspan(start, unit);
    if (std::memcmp(now.data(), before.data() + start, unit) == 0) continue;
    const bool zeros = is_zero_bytes(now);
    if (!runs.empty() && runs.back().offset + runs.back().length == start && runs.back().zeros == zeros)
      runs.back().length += unit;
    else
      runs.push_back({start, unit, zeros});
  }
  return runs;
}

namespace {

void write_header(std::span<std::byte> header, const StreamIndexes& indexes, uint64_t records) {
  std::memcpy(header.data(), kStreamMagic, 8);
  put_u32(&header[8], kStreamFormat);
  put_u32(&header[12], indexes.index.piece_size);
  put_u64(&header[16], indexes.index.total_size);
  put_u64(&header[24], records);
  std::memcpy(&header[32], indexes.index_sha.data(), 32);
  std::memcpy(&header[64], indexes.base_sha.data(), 32);
}

// A piece of `index` from the store into `out`, checked; zeros need no store.
// false: missing, short or not the index's (the caller decides what that means).
bool read_store_piece(const ChunkIndex& index, uint64_t piece, const std::string& store_root, std::span<std::byte> out,
                      Sha256Hasher& hasher) {
  if (index.is_zero(piece)) {
    std::fill(out.begin(), out.end(), std::byte{0});
    return true;
  }
  std::ifstream in(store_root + "/" + chunk_path(index.pieces[piece]), std::ios::binary);
  in.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(out.size()));
  return in && in.gcount() == static_cast<std::streamsize>(out.size()) && hasher(out) == index.pieces[piece];
}

}  // namespace

Result<StreamStats> write_stream(int fd, const StreamIndexes& indexes, const std::vector<uint64_t>& pieces,
                                 const std::string& store_root) {
  const ChunkIndex& index = indexes.index;
  std::vector<std::byte> header(kHeaderSize);
  write_header(header, indexes, pieces.size());
  TROY_TRY(write_all(fd, header));
  StreamStats stats;
  stats.records = pieces.size();
  std::vector<std::byte> after(index.piece_size), before(index.piece_size), record;
  Sha256Hasher hasher;
  for (const uint64_t piece : pieces) {
    if (piece >= index.piece_count()) return Error{fmt::format("piece {} is not a piece of the index", piece)};
    const uint32_t length = index.piece_length(piece);
    const auto now = std::span(after).first(length);
    if (!read_store_piece(index, piece, store_root, now, hasher))
      return Error{fmt::format("{}/{}: missing, short or damaged (not the {} bytes of piece {}); run troy publish "
                               "again", store_root, chunk_path(index.pieces[piece]), length, piece)};
    // The base's piece from the store: without it (removed), the whole piece.
    const auto was = std::span(before).first(length);
    const bool known = read_store_piece(indexes.base, piece, store_root, was, hasher);
    const auto runs = changed_runs(known ? std::span<const std::byte>(was) : std::span<const std::byte>(), now);
    record.assign(16 + kRunEntrySize * runs.size(), std::byte{0});
    put_u64(&record[0], piece);
    put_u32(&record[8], static_cast<uint32_t>(runs.size()));
    for (size_t r = 0; r < runs.size(); r++) {
      put_u32(&record[16 + kRunEntrySize * r], runs[r].offset);
      put_u32(&record[20 + kRunEntrySize * r], runs[r].length);
      put_u32(&record[24 + kRunEntrySize * r], runs[r].zeros ? 1 : 0);
    }
    for (const StreamRun& run : runs) {
      if (run.zeros) continue;
      record.insert(record.end(), now.begin() + run.offset, now.begin() + run.offset + run.length);
      stats.bytes_streamed += run.length;
    }
    TROY_TRY(write_all(fd, record));
    stats.received++;
  }
  stats.complete = true;
  return stats;
}

namespace {

// One record's run table, checked: inside the piece, on unit boundaries,
// increasing. nullopt: the stream cannot be framed any further.
std::optional<std::vector<StreamRun>> parse_runs(std::span<const std::byte> table, uint32_t piece_length) {
  std::vector<StreamRun> runs(table.size() / kRunEntrySize);
  uint64_t end = 0;
  for (size_t r = 0; r < runs.size(); r++) {
    const std::byte* entry = &table[kRunEntrySize * r];
    runs[r] = {get_u32(entry), get_u32(entry + 4), get_u32(entry + 8) == 1};
    const uint32_t kind = get_u32(entry + 8);
    if (kind > 1 || runs[r].length == 0 || runs[r].offset % kChunkUnit != 0 || runs[r].offset < end ||
        uint64_t{runs[r].offset} + runs[r].length > piece_length)
      return std::nullopt;
    end = uint64_t{runs[r].offset} + runs[r].length;
  }
  return runs;
}

class StreamReceiver {
 public:
  StreamReceiver(int fd, const StreamIndexes& indexes, SyncDisk& disk,
                 const std::function<void(const std::string&)>& say)
      : fd_(fd), indexes_(indexes), index_(indexes.index), disk_(disk), say_(say), piece_(index_.piece_size) {}

  Result<StreamStats> run() {
    const std::vector<uint64_t> changed = pieces_to_stream(index_, indexes_.base);
    written_.assign(index_.piece_count(), false);
    TROY_ASSIGN(started, read_header(changed.size()));
    if (started) TROY_TRY(read_records(changed));
    TROY_TRY(disk_.flush());
    for (const uint64_t piece : changed)
      if (!written_[piece]) stats_.missing.push_back(piece);
    stats_.complete = stats_.missing.empty();
    if (stats_.stopped.empty() && stats_.received + stats_.refused < stats_.records)
      stats_.stopped = fmt::format("the stream ended after {} of {} pieces", stats_.received + stats_.refused,
                                   stats_.records);
    return stats_;
  }

 private:
  Result<bool> read_header(size_t changed) {
    std::vector<std::byte> header(kHeaderSize);
    TROY_ASSIGN(whole, read_all(fd_, header));
    if (!whole) {
      stats_.stopped = "no session started (or it ended before the header)";
      return false;
    }
    if (std::memcmp(header.data(), kStreamMagic, 8) != 0 || get_u32(&header[8]) != kStreamFormat)
      return Error{"multicast stream: not a Troy stream of this format (magic or format): nothing written"};
    if (get_u32(&header[12]) != index_.piece_size || get_u64(&header[16]) != index_.total_size ||
        std::memcmp(&header[32], indexes_.index_sha.data(), 32) != 0 ||
        std::memcmp(&header[64], indexes_.base_sha.data(), 32) != 0)
      return Error{"multicast stream: of other content indexes (piece size, disk size or an index's SHA-256 "
                   "differs from the signed manifest's): nothing written"};
    stats_.records = get_u64(&header[24]);
    stats_.started = true;
    if (stats_.records > changed)
      return Error{fmt::format("multicast stream: {} records, the signed indexes differ in {} pieces: nothing "
                               "written", stats_.records, changed)};
    return true;
  }

  Result<void> read_records(const std::vector<uint64_t>& changed) {
    auto next = changed.begin();
    auto last_flush = std::chrono::steady_clock::now();
    for (uint64_t record = 0; record < stats_.records; record++) {
      std::byte head[16];
      TROY_ASSIGN(got_head, read_all(fd_, head));
      if (!got_head) return success();
      const uint64_t number = get_u64(head);
      // Only the pieces the two signed indexes say differ, in order.
      next = std::lower_bound(next, changed.end(), number);
      if (next == changed.end() || *next != number) {
        stats_.stopped = fmt::format("record {} names piece {}, not a next changed piece", record, number);
        return success();
      }
      ++next;
      const uint32_t length = index_.piece_length(number);
      const uint32_t run_count = get_u32(head + 8);
      std::vector<std::byte> table(size_t{std::min(run_count, length / kChunkUnit + 1)} * kRunEntrySize);
      std::optional<std::vector<StreamRun>> runs;
      if (run_count <= length / kChunkUnit + 1) {
        TROY_ASSIGN(got_table, read_all(fd_, table));
        if (!got_table) return success();
        runs = parse_runs(table, length);
      }
      if (!runs) {
        stats_.stopped = fmt::format("record {} (piece {}): a run table that does not fit the piece", record, number);
        return success();
      }
      TROY_ASSIGN(got_piece, receive_piece(number, *runs));
      if (!got_piece) return success();
      if (std::chrono::steady_clock::now() - last_flush > std::chrono::seconds(1)) {
        // As sync does: a flush a second bounds what a power cut loses.
        TROY_TRY(disk_.flush());
        last_flush = std::chrono::steady_clock::now();
      }
    }
    return success();
  }

  // The disk's piece with the runs laid over it; written (the runs only)
  // when its SHA-256 is the index's. false: the stream ended inside.
  Result<bool> receive_piece(uint64_t number, const std::vector<StreamRun>& runs) {
    const auto piece = piece_.span().first(index_.piece_length(number));
    TROY_TRY(disk_.read(index_.piece_offset(number), piece));
    for (const StreamRun& run : runs) {
      const auto at = piece.subspan(run.offset, run.length);
      if (run.zeros) {
        std::fill(at.begin(), at.end(), std::byte{0});
        continue;
      }
      TROY_ASSIGN(got, read_all(fd_, at));
      if (!got) return false;
      stats_.bytes_streamed += run.length;
    }
    const bool matches = index_.is_zero(number) ? is_zero_bytes(piece) : hasher_(piece) == index_.pieces[number];
    if (!matches) {
      stats_.refused++;
      say_(fmt::format("multicast stream: piece {} (bytes {}-{}) with the stream's runs does not match the signed "
                       "content index: refused, not written (HTTP brings it)",
                       number, index_.piece_offset(number), index_.piece_offset(number) + piece.size() - 1));
      return true;
    }
    for (const StreamRun& run : runs) {
      TROY_TRY(disk_.write(index_.piece_offset(number) + run.offset, piece.subspan(run.offset, run.length)));
      stats_.bytes_written += run.length;
    }
    written_[number] = true;
    stats_.received++;
    return true;
  }

  int fd_;
  const StreamIndexes& indexes_;
  const ChunkIndex& index_;
  SyncDisk& disk_;
  const std::function<void(const std::string&)>& say_;
  AlignedBuffer piece_;  // aligned: the disk writes it with O_DIRECT
  Sha256Hasher hasher_;
  std::vector<bool> written_;
  StreamStats stats_;
};

}  // namespace

Result<StreamStats> receive_stream(int fd, const StreamIndexes& indexes, SyncDisk& disk,
                                   const std::function<void(const std::string&)>& say) {
  StreamReceiver receiver(fd, indexes, disk, say);
  return receiver.run();
}

std::string describe(const StreamStats& stats) {
  std::string text = fmt::format("{} of {} pieces received ({} streamed), {} refused", stats.received, stats.records,
                                 short_bytes(static_cast<double>(stats.bytes_streamed)), stats.refused);
  if (!stats.missing.empty()) text += fmt::format(", {} changed pieces still missing", stats.missing.size());
  if (!stats.stopped.empty()) text += "; " + stats.stopped;
  return text;
}

std::vector<std::string> receiver_command(const MulticastSession& session, const std::string& interface) {
  return {"udp-receiver",
          "--nokbd",
          "--interface",
          interface,
          "--portbase",
          std::to_string(session.portbase),
          "--ttl",
          std::to_string(session.ttl),
          // No session within `wait` seconds: give up, HTTP completes.
          "--start-timeout",
          std::to_string(session.wait),
          // A sender silent this long is gone (killed, or it dropped us).
          "--receive-timeout",
          "10",
          // After the sender's final REQACK, linger this long (default 500
          // ms) in case our last ACK was lost and it asks again: on a LAN the
          // sender asks again within tens of ms, and every machine's update
          // waits for this before it ends.
          "--exit-wait",
          std::to_string(kReceiverExitWaitMs),
          "--no-progress"};
}

std::vector<std::string> sender_command(const MulticastSession& session, const SenderOptions& options) {
  std::vector<std::string> command = {"udp-sender",      "--nokbd",
                                      "--interface",     options.interface,
                                      "--portbase",      std::to_string(session.portbase),
                                      "--ttl",           std::to_string(session.ttl),
                                      "--min-receivers", std::to_string(options.min_receivers),
                                      "--min-wait",      std::to_string(options.min_wait),
                                      "--max-wait",      std::to_string(options.max_wait),
                                      "--retries-until-drop", std::to_string(options.retries_until_drop),
                                      // udp-sender checks its start condition
                                      // (--min-receivers, --min-wait) only when
                                      // its wait times out, 2 s by default:
                                      // every session started up to 2 s after
                                      // the last machine joined. With this it
                                      // checks (and says hello again, a small
                                      // broadcast that also brings machines that
                                      // listened before it started) this often.
                                      "--rexmit-hello-interval", std::to_string(kSenderHelloIntervalMs),
                                      "--no-progress"};
  if (!options.max_bitrate.empty()) {
    command.push_back("--max-bitrate");
    command.push_back(options.max_bitrate);
  }
  return command;
}

std::optional<uint64_t> parse_max_bitrate(std::string_view text) {
  uint64_t scale = 1;
  if (!text.empty() && (text.back() == 'k' || text.back() == 'K')) scale = 1000;
  if (!text.empty() && (text.back() == 'm' || text.back() == 'M')) scale = 1000000;
  if (scale != 1) text.remove_suffix(1);
  if (text.empty() || text.size() > 10 || text.find_first_not_of("0123456789") != std::string_view::npos)
    return std::nullopt;
  uint64_t number = 0;
  std::from_chars(text.data(), text.data() + text.size(), number);
  const uint64_t bits = number * scale;
  if (bits < 1000 || bits > kMaxBitrate) return std::nullopt;
  return bits;
}

bool in_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::string_view rest = path != nullptr ? path : "/usr/bin:/bin";
  while (!rest.empty()) {
    const size_t colon = std::min(rest.find(':'), rest.size());
    const std::string candidate = fmt::format("{}/{}", rest.substr(0, colon), program);
    if (::access(candidate.c_str(), X_OK) == 0) return true;
    rest.remove_prefix(std::min(colon + 1, rest.size()));
  }
  return false;
}

Result<StreamStats> run_piped(const std::vector<std::string>& command, bool child_writes, const std::string& log_path,
                              const std::function<Result<StreamStats>(int fd)>& use) {
  int ends[2];
  if (::pipe2(ends, O_CLOEXEC) != 0) return Error{fmt::format("pipe: {}", std::strerror(errno))};
  const int log = ::open(log_path.empty() ? "/dev/null" : log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
                         0644);
  std::vector<char*> argv;
  for (const std::string& word : command) argv.push_back(const_cast<char*>(word.c_str()));
  argv.push_back(nullptr);
  const pid_t child = ::fork();
  if (child < 0) return Error{fmt::format("fork: {}", std::strerror(errno))};
  if (child == 0) {
    // udp-sender or udp-receiver must not outlive troy (serve.sh stopped, the
    // payload killed): it would hold the session's ports.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    ::dup2(child_writes ? ends[1] : ends[0], child_writes ? STDOUT_FILENO : STDIN_FILENO);
    if (log >= 0) ::dup2(log, STDERR_FILENO);
    ::execvp(argv[0], argv.data());
    ::_exit(127);
  }
  const int ours = child_writes ? ends[0] : ends[1];
  ::close(child_writes ? ends[1] : ends[0]);
  if (log >= 0) ::close(log);
  // A receiver gone must not kill us with SIGPIPE: the write returns EPIPE.
  struct sigaction ignore {}, previous {};
  ignore.sa_handler = SIG_IGN;
  ::sigaction(SIGPIPE, &ignore, &previous);
  auto result = use(ours);
  ::close(ours);
  ::sigaction(SIGPIPE, &previous, nullptr);
  int status = 0;
  if (!result || (child_writes && !result->complete)) ::kill(child, SIGTERM);
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (!result) return result;
  const bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  if (!clean && !child_writes)
    return Error{fmt::format("{} ended with {} {}", command[0], WIFEXITED(status) ? "status" : "signal",
                             WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status))};
  if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
    return Error{fmt::format("{}: not found in PATH", command[0])};
  return result;
}

namespace {

Sha256 sha_from_hex(const std::string& hex) {
  Sha256 sha{};
  for (size_t i = 0; i < sha.size() && 2 * i + 2 <= hex.size(); i++)
    std::from_chars(hex.data() + 2 * i, hex.data() + 2 * i + 2, sha[i], 16);
  return sha;
}

}  // namespace

Result<std::optional<SessionContent>> session_content(const std::string& served, std::string& why_none) {
  const std::string manifest_path = served + "/manifest";
  TROY_ASSIGN(text, read_manifest_file(manifest_path));
  TROY_ASSIGN(manifest, parse_manifest(text, manifest_path));
  const ManifestVersion& newest = manifest.versions.back();
  if (manifest.versions.size() < 2) {
    why_none = fmt::format("only {} is published: a session sends what a version changes, nothing yet", newest.name);
    return std::optional<SessionContent>{};
  }
  const ManifestVersion& base = manifest.versions.end()[-2];
  if (newest.content_index.path.empty() || base.content_index.path.empty()) {
    why_none = fmt::format("{} or {} has no content index (published by an older troy): publish again", base.name,
                           newest.name);
    return std::optional<SessionContent>{};
  }
  SessionContent content;
  content.version = newest.name;
  content.base = base.name;
  TROY_ASSIGN(index, read_chunk_index(served + "/" + newest.content_index.path));
  TROY_ASSIGN(base_index, read_chunk_index(served + "/" + base.content_index.path));
  content.index = std::move(index);
  content.base_index = std::move(base_index);
  content.index_sha = sha256(serialize(content.index));
  content.base_sha = sha256(serialize(content.base_index));
  for (const auto& [version, sha] : {std::pair{&newest, content.index_sha}, std::pair{&base, content.base_sha}})
    if (to_hex(sha) != version->content_index.sha256)
      return Error{fmt::format("{}: its SHA-256 is not the manifest's: publish again", version->content_index.path)};
  content.pieces = pieces_to_stream(content.index, content.base_index);
  if (content.pieces.empty() && content.index.total_size != content.base_index.total_size) {
    why_none = fmt::format("{} and {} are disks of different sizes: nothing to patch", base.name, newest.name);
    return std::optional<SessionContent>{};
  }
  return std::optional<SessionContent>(std::move(content));
}

Result<void> write_announcement(const std::string& served, const std::vector<MulticastSession>& sessions) {
  const std::string announcement = served + "/" + kDeliveryFile;
  const std::string partial = announcement + ".partial";
  std::ofstream out(partial, std::ios::trunc);
  for (const MulticastSession& session : sessions) out << format_announcement(session);
  out.close();
  if (!out || std::rename(partial.c_str(), announcement.c_str()) != 0)
    return Error{fmt::format("{}: cannot write: {}", announcement, std::strerror(errno))};
  return success();
}

Result<StreamStats> send_session(const std::string& served, const SessionContent& content,
                                 const MulticastSession& session, const SenderOptions& options,
                                 const std::string& log_path) {
  const StreamIndexes indexes = content.indexes();
  return run_piped(sender_command(session, options), /*child_writes=*/false, log_path,
                   [&](int fd) { return write_stream(fd, indexes, content.pieces, served); });
}

std::optional<StreamStats> receive_if_announced(const MulticastReceive& receive) {
  const auto& versions = receive.manifest.versions;
  const ManifestVersion& newest = versions.back();
  std::vector<MulticastSession> sessions;
  if (receive.announcement) {
    auto parsed = parse_announcement(*receive.announcement, kDeliveryFile);
    if (parsed) sessions = *parsed;
    else receive.say(fmt::format("ignoring the served {}", parsed.error().message));
  }
  const std::string held = receive.held < versions.size() ? versions[receive.held].name : std::string();
  const DeliveryChoice choice = choose_delivery(sessions, newest.name, newest.content_index.sha256, held,
                                                local_addresses(), in_path("udp-receiver"));
  receive.say(choice.why);
  if (choice.path != DeliveryPath::Multicast) return std::nullopt;
  const ManifestVersion& base = versions[receive.held];
  const auto received = [&]() -> Result<StreamStats> {
    if (receive.confirm) TROY_TRY(receive.confirm());
    // Both indexes, each checked against the manifest's SHA-256 by fetch.
    TROY_ASSIGN(path, receive.fetch("content index " + newest.name, newest.content_index));
    TROY_ASSIGN(base_path, receive.fetch("content index " + base.name, base.content_index));
    auto index = read_chunk_index(path);
    auto base_index = read_chunk_index(base_path);
    ::unlink(path.c_str());  // the work folder is RAM in the payload
    ::unlink(base_path.c_str());
    if (!index) return index.error();
    if (!base_index) return base_index.error();
    const StreamIndexes indexes{*index, sha_from_hex(newest.content_index.sha256), *base_index,
                                sha_from_hex(base.content_index.sha256)};
    TROY_ASSIGN(disk, open_sync_disk(receive.device));
    // udpcast takes no one into a running session: a machine that boots
    // while one runs waits (--start-timeout, the announcement's wait) and
    // answers the next session's hello; if none starts within that wait,
    // the delta path brings everything (docs/delivery.md, late join).
    return run_piped(receiver_command(choice.session, choice.interface), /*child_writes=*/true, receive.log_path,
                     [&](int fd) { return receive_stream(fd, indexes, *disk, receive.say); });
  }();
  if (!received) {
    receive.say(fmt::format("multicast: {}; the pieces come over HTTP", received.error().message));
    return StreamStats{};
  }
  receive.say(fmt::format("multicast: {}", describe(*received)));
  return *received;
}

}  // namespace troy::cli
