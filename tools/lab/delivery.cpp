#include "delivery.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include <fmt/format.h>

#include "progress.h"

namespace troy::cli {
namespace {

constexpr char kStreamMagic[8] = {'T', 'R', 'O', 'Y', 'M', 'C', 'S', '1'};
constexpr uint32_t kStreamFormat = 1;
constexpr size_t kHeaderSize = 64;

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
  if (key == "version") {
    if (value.empty()) return bad("a version name");
    session.version = value;
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

Result<MulticastSession> parse_announcement(std::string_view text, const std::string& name) {
  // One line; more (or a longer file) is not ours.
  if (text.size() > 1024) return Error{fmt::format("{}: {} bytes, an announcement is one short line", name, text.size())};
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.remove_suffix(1);
  if (text.find('\n') != std::string_view::npos) return Error{fmt::format("{}: more than one line", name)};
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
  if (first) return Error{fmt::format("{}: empty", name)};
  if (session.version.empty() || session.index_sha256.empty() || session.sender == 0)
    return Error{fmt::format("{}: needs version=, index= and sender=", name)};
  return session;
}

std::string format_announcement(const MulticastSession& session) {
  return fmt::format("multicast version={} index={} sender={}/{} portbase={} ttl={} wait={}\n", session.version,
                     session.index_sha256, format_ipv4(session.sender), session.prefix, session.portbase, session.ttl,
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

DeliveryChoice choose_delivery(const std::optional<MulticastSession>& session, const std::string& newest,
                               const std::string& newest_index_sha256, const std::vector<LocalAddress>& addresses,
                               bool receiver_available) {
  DeliveryChoice choice;
  if (!session) {
    choice.why = "no multicast session announced: the pieces come over HTTP";
    return choice;
  }
  if (session->version != newest || session->index_sha256 != newest_index_sha256) {
    choice.why = fmt::format("the multicast session sends {}, not {} (the newest signed version, or another "
                             "index of it): the pieces come over HTTP",
                             session->version, newest);
    return choice;
  }
  if (!receiver_available) {
    choice.why = "udp-receiver is not in this payload: the pieces come over HTTP";
    return choice;
  }
  const uint32_t mask = mask_of(session->prefix);
  for (const LocalAddress& local : addresses) {
    if ((local.address & mask) != (session->sender & mask)) continue;
    choice.path = DeliveryPath::Multicast;
    choice.interface = local.interface;
    choice.why = fmt::format("multicast session for {} from {} on {}: receiving it, then HTTP for anything it "
                             "did not bring", newest, format_ipv4(session->sender), local.interface);
    return choice;
  }
  const std::string subnet = fmt::format("{}/{}", format_ipv4(session->sender & mask), session->prefix);
  if (session->ttl > 1 && !addresses.empty()) {
    // The admin routes multicast between subnets (TTL above 1): listen on
    // the interface of the default route's subnet, the first address.
    choice.path = DeliveryPath::Multicast;
    choice.interface = addresses.front().interface;
    choice.why = fmt::format("multicast session for {} from {} (another subnet, routed: TTL {}) on {}", newest,
                             subnet, session->ttl, choice.interface);
    return choice;
  }
  choice.why = fmt::format("the multicast session is on {} and this machine is not (TTL {}: routers do not forward "
                           "it): the pieces come over HTTP",
                           subnet, session->ttl);
  return choice;
}

std::vector<uint64_t> pieces_to_stream(const ChunkIndex& index, const ChunkIndex* previous) {
  const bool comparable = previous != nullptr && previous->piece_size == index.piece_size &&
                          previous->total_size == index.total_size;
  std::vector<uint64_t> pieces;
  for (size_t i = 0; i < index.piece_count(); i++) {
    if (index.is_zero(i)) continue;  // the sync writes zeros without the network
    if (comparable && previous->pieces[i] == index.pieces[i]) continue;
    pieces.push_back(i);
  }
  return pieces;
}

Result<StreamStats> write_stream(int fd, const ChunkIndex& index, const Sha256& index_sha,
                                 const std::vector<uint64_t>& pieces, const std::string& store_root) {
  std::vector<std::byte> header(kHeaderSize);
  std::memcpy(header.data(), kStreamMagic, 8);
  put_u32(&header[8], kStreamFormat);
  put_u32(&header[12], index.piece_size);
  put_u64(&header[16], index.total_size);
  put_u64(&header[24], pieces.size());
  std::memcpy(&header[32], index_sha.data(), 32);
  TROY_TRY(write_all(fd, header));
  StreamStats stats;
  stats.records = pieces.size();
  std::vector<std::byte> record(8 + index.piece_size);
  Sha256Hasher hasher;
  for (const uint64_t piece : pieces) {
    if (piece >= index.piece_count() || index.is_zero(piece))
      return Error{fmt::format("piece {} is not a non-zero piece of the index", piece)};
    const uint32_t length = index.piece_length(piece);
    const std::string path = store_root + "/" + chunk_path(index.pieces[piece]);
    std::ifstream in(path, std::ios::binary);
    put_u64(record.data(), piece);
    in.read(reinterpret_cast<char*>(record.data() + 8), length);
    const auto body = std::span(record).subspan(8, length);
    if (!in || in.gcount() != static_cast<std::streamsize>(length) || hasher(body) != index.pieces[piece])
      return Error{fmt::format("{}: missing, short or damaged (not the {} bytes of piece {}); run troy publish again",
                               path, length, piece)};
    TROY_TRY(write_all(fd, std::span(record).first(8 + length)));
    stats.received++;
    stats.bytes_written += length;
  }
  stats.complete = true;
  return stats;
}

Result<StreamStats> receive_stream(int fd, const ChunkIndex& index, const Sha256& index_sha, SyncDisk& disk,
                                   const std::function<void(const std::string&)>& say) {
  StreamStats stats;
  std::vector<std::byte> header(kHeaderSize);
  TROY_ASSIGN(whole, read_all(fd, header));
  if (!whole) {
    stats.stopped = "no session started (or it ended before the header)";
    return stats;
  }
  if (std::memcmp(header.data(), kStreamMagic, 8) != 0 || get_u32(&header[8]) != kStreamFormat)
    return Error{"multicast stream: not a Troy stream (magic or format): nothing written"};
  if (get_u32(&header[12]) != index.piece_size || get_u64(&header[16]) != index.total_size ||
      std::memcmp(&header[32], index_sha.data(), 32) != 0)
    return Error{"multicast stream: of another content index (piece size, disk size or index SHA-256 differs "
                 "from the signed manifest's): nothing written"};
  stats.records = get_u64(&header[24]);
  if (stats.records > index.piece_count())
    return Error{fmt::format("multicast stream: {} records, the index has {} pieces: nothing written", stats.records,
                             index.piece_count())};
  std::vector<std::byte> piece(index.piece_size);
  Sha256Hasher hasher;
  uint64_t previous = 0;
  auto last_flush = std::chrono::steady_clock::now();
  for (uint64_t record = 0; record < stats.records; record++) {
    std::byte number_bytes[8];
    TROY_ASSIGN(got_number, read_all(fd, number_bytes));
    if (!got_number) break;
    const uint64_t number = get_u64(number_bytes);
    // The index frames the stream: a number out of order or out of range
    // means we can no longer know where the next record starts.
    if (number >= index.piece_count() || (record > 0 && number <= previous) || index.is_zero(number)) {
      stats.stopped = fmt::format("record {} names piece {}, not a next non-zero piece of the index", record, number);
      break;
    }
    previous = number;
    const auto body = std::span(piece).first(index.piece_length(number));
    TROY_ASSIGN(got_body, read_all(fd, body));
    if (!got_body) break;
    if (hasher(body) != index.pieces[number]) {
      stats.refused++;
      say(fmt::format("multicast stream: piece {} (bytes {}-{}) does not match the signed content index: refused, "
                      "not written (HTTP brings it)",
                      number, index.piece_offset(number), index.piece_offset(number) + body.size() - 1));
      continue;
    }
    TROY_TRY(disk.write(index.piece_offset(number), body));
    stats.received++;
    stats.bytes_written += body.size();
    // As sync does: a flush a second bounds what a power cut loses without
    // a flush per piece.
    if (std::chrono::steady_clock::now() - last_flush > std::chrono::seconds(1)) {
      TROY_TRY(disk.flush());
      last_flush = std::chrono::steady_clock::now();
    }
  }
  TROY_TRY(disk.flush());
  stats.complete = stats.stopped.empty() && stats.received + stats.refused == stats.records;
  if (!stats.complete && stats.stopped.empty())
    stats.stopped = fmt::format("the stream ended after {} of {} pieces", stats.received + stats.refused,
                                stats.records);
  return stats;
}

std::string describe(const StreamStats& stats) {
  std::string text = fmt::format("{} of {} pieces received ({}), {} refused", stats.received, stats.records,
                                 short_bytes(static_cast<double>(stats.bytes_written)), stats.refused);
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
                                      "--no-progress"};
  if (!options.max_bitrate.empty()) {
    command.push_back("--max-bitrate");
    command.push_back(options.max_bitrate);
  }
  return command;
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

Result<StreamStats> send_session(const std::string& served, MulticastSession session, const SenderOptions& options,
                                 const std::string& log_path, const std::function<void(const std::string&)>& say) {
  const std::string manifest_path = served + "/manifest";
  TROY_ASSIGN(text, read_manifest_file(manifest_path));
  TROY_ASSIGN(manifest, parse_manifest(text, manifest_path));
  const ManifestVersion& newest = manifest.versions.back();
  if (newest.content_index.path.empty())
    return Error{fmt::format("{}: {} has no content index (published by an older troy): publish again",
                             manifest_path, newest.name)};
  TROY_ASSIGN(index, read_chunk_index(served + "/" + newest.content_index.path));
  std::optional<ChunkIndex> previous;
  if (manifest.versions.size() > 1 && !manifest.versions.end()[-2].content_index.path.empty()) {
    auto read = read_chunk_index(served + "/" + manifest.versions.end()[-2].content_index.path);
    if (read) previous = std::move(*read);
  }
  const std::vector<uint64_t> pieces = pieces_to_stream(index, previous ? &*previous : nullptr);
  const Sha256 index_sha = sha256(serialize(index));
  session.version = newest.name;
  session.index_sha256 = to_hex(index_sha);
  if (session.index_sha256 != newest.content_index.sha256)
    return Error{fmt::format("{}: its SHA-256 is not the manifest's: publish again", newest.content_index.path)};
  const std::string announcement = served + "/" + kDeliveryFile;
  {
    const std::string partial = announcement + ".partial";
    std::ofstream out(partial, std::ios::trunc);
    out << format_announcement(session);
    out.close();
    if (!out || std::rename(partial.c_str(), announcement.c_str()) != 0)
      return Error{fmt::format("{}: cannot write: {}", announcement, std::strerror(errno))};
  }
  uint64_t bytes = 0;
  for (const uint64_t piece : pieces) bytes += index.piece_length(piece);
  say(fmt::format("multicast session of {}: {} pieces ({}) changed since {}, on {} port {}; waiting for receivers",
                  newest.name, pieces.size(), short_bytes(static_cast<double>(bytes)),
                  previous ? manifest.versions.end()[-2].name : std::string("nothing (every piece)"),
                  options.interface, session.portbase));
  return run_piped(sender_command(session, options), /*child_writes=*/false, log_path,
                   [&](int fd) { return write_stream(fd, index, index_sha, pieces, served); });
}

std::optional<StreamStats> receive_if_announced(const MulticastReceive& receive) {
  const ManifestVersion& newest = receive.manifest.versions.back();
  std::optional<MulticastSession> session;
  if (receive.announcement) {
    auto parsed = parse_announcement(*receive.announcement, kDeliveryFile);
    if (parsed) session = *parsed;
    else receive.say(fmt::format("ignoring the served {}", parsed.error().message));
  }
  const DeliveryChoice choice = choose_delivery(session, newest.name, newest.content_index.sha256, local_addresses(),
                                                in_path("udp-receiver"));
  receive.say(choice.why);
  if (choice.path != DeliveryPath::Multicast) return std::nullopt;
  const auto received = [&]() -> Result<StreamStats> {
    if (receive.confirm) TROY_TRY(receive.confirm());
    TROY_ASSIGN(path, receive.fetch("content index " + newest.name, newest.content_index));
    auto index = read_chunk_index(path);
    if (!index) return index.error();
    // The manifest's SHA-256 of the file, which fetch has just checked.
    Sha256 index_sha{};
    for (size_t i = 0; i < index_sha.size(); i++)
      std::from_chars(newest.content_index.sha256.data() + 2 * i, newest.content_index.sha256.data() + 2 * i + 2,
                      index_sha[i], 16);
    TROY_ASSIGN(disk, open_sync_disk(receive.device));
    return run_piped(receiver_command(*session, choice.interface), /*child_writes=*/true, receive.log_path,
                     [&](int fd) { return receive_stream(fd, *index, index_sha, *disk, receive.say); });
  }();
  if (!received) {
    receive.say(fmt::format("multicast: {}; the pieces come over HTTP", received.error().message));
    return StreamStats{};
  }
  receive.say(fmt::format("multicast: {}", describe(*received)));
  return *received;
}

}  // namespace troy::cli
