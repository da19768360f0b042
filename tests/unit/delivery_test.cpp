#include "delivery.h"

#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "chunk_store.h"

namespace troy::cli::delivery_test {
namespace {

constexpr uint32_t kPiece = 64 << 10;
const std::string kSha(64, 'a');

class MemoryDisk final : public SyncDisk {
 public:
  explicit MemoryDisk(size_t size) : bytes(size) {}
  uint64_t size() const override { return bytes.size(); }
  const std::string& name() const override { return name_; }
  Result<void> read(uint64_t offset, std::span<std::byte> out) override {
    std::copy_n(bytes.begin() + offset, out.size(), out.begin());
    return success();
  }
  Result<void> write(uint64_t offset, std::span<const std::byte> data) override {
    std::copy(data.begin(), data.end(), bytes.begin() + offset);
    return success();
  }
  Result<void> zero(uint64_t offset, uint64_t length) override {
    std::fill_n(bytes.begin() + offset, length, std::byte{0});
    return success();
  }
  Result<void> flush() override { return success(); }
  std::vector<std::byte> bytes;
  std::string name_ = "disk";
};

std::vector<std::byte> pattern(size_t size, uint8_t seed) {
  std::vector<std::byte> bytes(size);
  uint32_t state = seed * 2654435761u + 1;
  for (auto& byte : bytes) {
    state = state * 1103515245u + 12345u;
    byte = std::byte(static_cast<uint8_t>(state >> 16));
  }
  return bytes;
}

ChunkIndex index_of(const std::vector<std::byte>& content) {
  ChunkIndex index;
  index.piece_size = kPiece;
  index.total_size = content.size();
  for (size_t at = 0; at < content.size(); at += kPiece)
    append_piece(index, std::span(content).subspan(at, std::min<size_t>(kPiece, content.size() - at)));
  return index;
}

MulticastSession session_on(const std::string& sender, unsigned prefix) {
  MulticastSession session;
  session.version = "v3";
  session.base = "v2";
  session.index_sha256 = kSha;
  session.sender = *parse_ipv4(sender);
  session.prefix = prefix;
  return session;
}

TEST(DeliveryAnnouncement, RoundTrips) {
  MulticastSession session = session_on("10.0.0.1", 24);
  session.portbase = 9100;
  session.ttl = 4;
  session.wait = 30;
  auto all = parse_announcement(format_announcement(session), "delivery");
  ASSERT_TRUE(all.ok()) << all.error().message;
  ASSERT_EQ(all->size(), 1u);
  const MulticastSession* parsed = &all->front();
  EXPECT_EQ(parsed->version, "v3");
  EXPECT_EQ(parsed->base, "v2");
  EXPECT_EQ(parsed->index_sha256, kSha);
  EXPECT_EQ(format_ipv4(parsed->sender), "10.0.0.1");
  EXPECT_EQ(parsed->prefix, 24u);
  EXPECT_EQ(parsed->portbase, 9100u);
  EXPECT_EQ(parsed->ttl, 4u);
  EXPECT_EQ(parsed->wait, 30u);
}

TEST(DeliveryAnnouncement, RefusesBadFieldsNamingThem) {
  const std::string good = "multicast version=v3 base=v2 index=" + kSha + " sender=10.0.0.1/24";
  EXPECT_TRUE(parse_announcement(good, "delivery").ok());
  const auto error_of = [](const std::string& text) {
    auto parsed = parse_announcement(text, "delivery");
    return parsed.ok() ? std::string("accepted") : parsed.error().message;
  };
  EXPECT_NE(error_of(good + " ttl=0").find("field ttl"), std::string::npos);
  EXPECT_NE(error_of(good + " portbase=70000").find("field portbase"), std::string::npos);
  EXPECT_NE(error_of(good + " colour=red").find("unknown field 'colour'"), std::string::npos);
  EXPECT_NE(error_of("multicast version=v3 base=v2 index=XYZ sender=10.0.0.1/24").find("field index"),
            std::string::npos);
  EXPECT_NE(error_of("multicast version=v3 base=v2 index=" + kSha + " sender=10.0.0.999/24").find("field sender"),
            std::string::npos);
  EXPECT_NE(error_of("multicast version=v3 base=v2 index=" + kSha).find("needs"), std::string::npos);
  // Without base= (an older troy's line): not taken.
  EXPECT_NE(error_of("multicast version=v3 index=" + kSha + " sender=10.0.0.1/24").find("needs"), std::string::npos);
  EXPECT_NE(error_of("unicast " + good).find("not 'multicast'"), std::string::npos);
  EXPECT_NE(error_of(good + "\n" + good + " colour=red").find("line 2: unknown field"), std::string::npos);
  EXPECT_NE(error_of(std::string(5000, 'x')).find("5000 bytes"), std::string::npos);
}

TEST(DeliveryAnnouncement, OneLinePerSender) {
  MulticastSession first = session_on("10.0.0.1", 24), second = session_on("10.0.1.1", 24);
  second.portbase = 9002;
  auto parsed = parse_announcement(format_announcement(first) + format_announcement(second), "delivery");
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  ASSERT_EQ(parsed->size(), 2u);
  EXPECT_EQ((*parsed)[1].portbase, 9002u);
  EXPECT_TRUE(parse_announcement("", "delivery")->empty());
}

TEST(DeliveryChoice, MulticastOnTheSendersSubnet) {
  const std::vector<LocalAddress> addresses = {{"eth0", *parse_ipv4("10.0.0.57"), 24}};
  const auto choice = choose_delivery({session_on("10.0.0.1", 24)}, "v3", kSha, "v2", addresses, true);
  EXPECT_EQ(choice.path, DeliveryPath::Multicast);
  EXPECT_EQ(choice.interface, "eth0");
}

TEST(DeliveryChoice, HttpWithoutASessionOrForAnotherVersion) {
  const std::vector<LocalAddress> addresses = {{"eth0", *parse_ipv4("10.0.0.57"), 24}};
  auto choice = choose_delivery({}, "v3", kSha, "v2", addresses, true);
  EXPECT_EQ(choice.path, DeliveryPath::Http);
  EXPECT_NE(choice.why.find("no multicast session"), std::string::npos);
  // A session still sending v2 (the server published v3 since).
  MulticastSession old = session_on("10.0.0.1", 24);
  old.version = "v2";
  choice = choose_delivery({old}, "v3", kSha, "v2", addresses, true);
  EXPECT_EQ(choice.path, DeliveryPath::Http);
  EXPECT_NE(choice.why.find("sends v2"), std::string::npos);
  // Same name, another index (republished): HTTP too.
  choice = choose_delivery({session_on("10.0.0.1", 24)}, "v3", std::string(64, 'b'), "v2", addresses, true);
  EXPECT_EQ(choice.path, DeliveryPath::Http);
  // A disk that holds v1, or no version exactly: the session's runs patch v2.
  choice = choose_delivery({session_on("10.0.0.1", 24)}, "v3", kSha, "v1", addresses, true);
  EXPECT_EQ(choice.path, DeliveryPath::Http);
  EXPECT_NE(choice.why.find("patches v2 and this disk holds v1"), std::string::npos);
  choice = choose_delivery({session_on("10.0.0.1", 24)}, "v3", kSha, "", addresses, true);
  EXPECT_NE(choice.why.find("no version exactly"), std::string::npos);
}

TEST(DeliveryChoice, OfSeveralSendersTheOneOnThisSubnet) {
  const std::vector<LocalAddress> addresses = {{"eth0", *parse_ipv4("10.0.1.57"), 24}};
  MulticastSession second = session_on("10.0.1.1", 24);
  second.portbase = 9002;
  const auto choice = choose_delivery({session_on("10.0.0.1", 24), second}, "v3", kSha, "v2", addresses, true);
  EXPECT_EQ(choice.path, DeliveryPath::Multicast);
  EXPECT_EQ(choice.session.portbase, 9002u);
  const auto none = choose_delivery({session_on("10.0.0.1", 24), second}, "v3", kSha, "v2",
                                    {{"eth0", *parse_ipv4("10.0.2.57"), 24}}, true);
  EXPECT_EQ(none.path, DeliveryPath::Http);
  EXPECT_NE(none.why.find("10.0.0.0/24, 10.0.1.0/24"), std::string::npos);
}

TEST(DeliveryChoice, HttpWithoutTheReceiver) {
  const std::vector<LocalAddress> addresses = {{"eth0", *parse_ipv4("10.0.0.57"), 24}};
  const auto choice = choose_delivery({session_on("10.0.0.1", 24)}, "v3", kSha, "v2", addresses, false);
  EXPECT_EQ(choice.path, DeliveryPath::Http);
  EXPECT_NE(choice.why.find("udp-receiver"), std::string::npos);
}

TEST(DeliveryChoice, AnotherSubnetTakesHttpUnlessTheSessionIsRouted) {
  const std::vector<LocalAddress> addresses = {{"eth1", *parse_ipv4("10.0.1.57"), 24}};
  auto choice = choose_delivery({session_on("10.0.0.1", 24)}, "v3", kSha, "v2", addresses, true);
  EXPECT_EQ(choice.path, DeliveryPath::Http);
  EXPECT_NE(choice.why.find("10.0.0.0/24"), std::string::npos);
  MulticastSession routed = session_on("10.0.0.1", 24);
  routed.ttl = 8;
  choice = choose_delivery({routed}, "v3", kSha, "v2", addresses, true);
  EXPECT_EQ(choice.path, DeliveryPath::Multicast);
  EXPECT_EQ(choice.interface, "eth1");
  // A /16 session covers both.
  choice = choose_delivery({session_on("10.0.0.1", 16)}, "v3", kSha, "v2", addresses, true);
  EXPECT_EQ(choice.path, DeliveryPath::Multicast);
}

TEST(DeliveryStream, CarriesThePiecesTheVersionChanges) {
  auto before = pattern(kPiece * 6, 1);
  auto after = before;
  std::fill_n(after.begin() + 2 * kPiece, kPiece, std::byte{0});  // piece 2 becomes zeros
  after[4 * kPiece + 7] ^= std::byte{1};                          // piece 4 changes
  const ChunkIndex old_index = index_of(before), new_index = index_of(after);
  EXPECT_EQ(pieces_to_stream(new_index, old_index), (std::vector<uint64_t>{2, 4}));
  // Another disk size: nothing to patch.
  EXPECT_TRUE(pieces_to_stream(new_index, index_of(pattern(kPiece * 5, 1))).empty());
}

TEST(DeliveryStream, RunsAreTheChangedUnits) {
  auto before = pattern(kPiece, 1);
  auto after = before;
  after[5] ^= std::byte{1};                                   // unit 0
  after[4096 + 9] ^= std::byte{1};                            // unit 1: merged with 0
  std::fill_n(after.begin() + 3 * 4096, 2 * 4096, std::byte{0});  // units 3-4 become zeros
  after[10 * 4096] ^= std::byte{1};                           // unit 10
  const auto runs = changed_runs(before, after);
  ASSERT_EQ(runs.size(), 3u);
  EXPECT_EQ(runs[0].offset, 0u);
  EXPECT_EQ(runs[0].length, 2 * 4096u);
  EXPECT_FALSE(runs[0].zeros);
  EXPECT_EQ(runs[1].offset, 3 * 4096u);
  EXPECT_EQ(runs[1].length, 2 * 4096u);
  EXPECT_TRUE(runs[1].zeros);
  EXPECT_EQ(runs[2].offset, 10 * 4096u);
  // The base unknown: the whole piece.
  const auto whole = changed_runs({}, after);
  ASSERT_EQ(whole.size(), 1u);
  EXPECT_EQ(whole[0].length, kPiece);
}

struct Streamed {
  std::filesystem::path store;
  ChunkIndex index, base;
  Sha256 index_sha{}, base_sha{};
  std::vector<std::byte> before, content;  // the base's disk, the newest's
  std::vector<std::byte> stream;           // as udp-receiver would hand it over
  std::vector<uint64_t> pieces;
  StreamIndexes indexes() const { return {index, index_sha, base, base_sha}; }
};

std::vector<std::byte> read_fd(int fd) {
  std::vector<std::byte> all;
  std::byte buffer[65536];
  ssize_t got;
  while ((got = ::read(fd, buffer, sizeof buffer)) > 0) all.insert(all.end(), buffer, buffer + got);
  return all;
}

void store_all(Streamed& s, const ChunkIndex& index, const std::vector<std::byte>& content) {
  ChunkStoreStats stats;
  for (size_t i = 0; i < index.piece_count(); i++) {
    if (index.is_zero(i)) continue;
    EXPECT_TRUE(store_piece(s.store, index.pieces[i],
                            std::span(content).subspan(index.piece_offset(i), index.piece_length(i)), stats)
                    .ok());
  }
}

// Six pieces, the last half a piece long; the newest changes a few units of
// pieces 1, 3 and 5, and makes piece 4 zeros; written through a pipe.
Streamed make_stream(const std::string& name) {
  Streamed s;
  s.store = std::filesystem::temp_directory_path() / ("troy-delivery-" + name + std::to_string(::getpid()));
  std::filesystem::create_directories(s.store);
  s.before = pattern(kPiece * 5 + kPiece / 2, 7);
  s.content = s.before;
  s.content[kPiece + 100] ^= std::byte{1};
  const auto fresh = pattern(3 * 4096, 9);
  std::copy(fresh.begin(), fresh.end(), s.content.begin() + 3 * kPiece + 8192);
  std::fill_n(s.content.begin() + 4 * kPiece, kPiece, std::byte{0});
  s.content[5 * kPiece + 3] ^= std::byte{1};
  s.base = index_of(s.before);
  s.index = index_of(s.content);
  s.base_sha = sha256(serialize(s.base));
  s.index_sha = sha256(serialize(s.index));
  store_all(s, s.base, s.before);
  store_all(s, s.index, s.content);
  s.pieces = pieces_to_stream(s.index, s.base);
  EXPECT_EQ(s.pieces, (std::vector<uint64_t>{1, 3, 4, 5}));
  int ends[2];
  EXPECT_EQ(::pipe(ends), 0);
  std::thread reader([&] { s.stream = read_fd(ends[0]); });
  auto written = write_stream(ends[1], s.indexes(), s.pieces, s.store);
  ::close(ends[1]);
  reader.join();
  ::close(ends[0]);
  EXPECT_TRUE(written.ok());
  return s;
}

// The stream through a file descriptor, as from udp-receiver's pipe.
Result<StreamStats> receive_bytes(const Streamed& s, const std::vector<std::byte>& stream, MemoryDisk& disk,
                                  std::vector<std::string>* said = nullptr) {
  const std::string path = s.store.string() + "/stream";
  {
    std::FILE* file = std::fopen(path.c_str(), "wb");
    if (!stream.empty()) std::fwrite(stream.data(), 1, stream.size(), file);  // data() of an empty vector may be null (UBSan)
    std::fclose(file);
  }
  const int fd = ::open(path.c_str(), O_RDONLY);
  auto result = receive_stream(fd, s.indexes(), disk, [&](const std::string& line) {
    if (said) said->push_back(line);
  });
  ::close(fd);
  return result;
}

MemoryDisk base_disk(const Streamed& s) {
  MemoryDisk disk(s.content.size());
  disk.bytes = s.before;
  return disk;
}

// Records: 16 bytes, 12 per run, the runs' bytes. Record k starts here.
size_t record_at(const Streamed& s, size_t k) {
  size_t at = 96;
  for (size_t r = 0; r < k; r++) {
    const size_t runs = size_t(s.stream[at + 8]);
    size_t bytes = 0;
    for (size_t e = 0; e < runs; e++) {
      const size_t entry = at + 16 + 12 * e;
      if (s.stream[entry + 8] == std::byte{0})
        bytes += size_t(s.stream[entry + 4]) | size_t(s.stream[entry + 5]) << 8 | size_t(s.stream[entry + 6]) << 16;
    }
    at += 16 + 12 * runs + bytes;
  }
  return at;
}

TEST(DeliveryStream, CarriesOnlyTheChangedUnitsAndEndsByteForByte) {
  Streamed s = make_stream("whole");
  // Units: 1 + 3 (+ the zeros of piece 4, no bytes) + 1, not four pieces.
  EXPECT_LT(s.stream.size(), 96 + 4 * 16 + 4 * 12 + 5 * 4096 + 1);
  MemoryDisk disk = base_disk(s);
  auto stats = receive_bytes(s, s.stream, disk);
  ASSERT_TRUE(stats.ok()) << stats.error().message;
  EXPECT_TRUE(stats->complete);
  EXPECT_TRUE(stats->missing.empty());
  EXPECT_EQ(stats->received, 4u);
  EXPECT_EQ(stats->bytes_streamed, 5 * 4096u);
  EXPECT_EQ(disk.bytes, s.content);
  std::filesystem::remove_all(s.store);
}

TEST(DeliveryStream, ATamperedPieceIsRefusedAndNeverWritten) {
  Streamed s = make_stream("tampered");
  auto stream = s.stream;
  stream[record_at(s, 1) + 16 + 12 + 100] ^= std::byte{0x80};  // piece 3's run bytes
  MemoryDisk disk = base_disk(s);
  std::vector<std::string> said;
  auto stats = receive_bytes(s, stream, disk, &said);
  ASSERT_TRUE(stats.ok()) << stats.error().message;
  EXPECT_EQ(stats->refused, 1u);
  EXPECT_EQ(stats->received, 3u);
  EXPECT_FALSE(stats->complete);
  EXPECT_EQ(stats->missing, (std::vector<uint64_t>{3}));
  ASSERT_EQ(said.size(), 1u);
  EXPECT_NE(said[0].find("piece 3"), std::string::npos);
  // Piece 3 still the base's, the others the newest's.
  EXPECT_TRUE(std::equal(disk.bytes.begin() + 3 * kPiece, disk.bytes.begin() + 4 * kPiece,
                         s.before.begin() + 3 * kPiece));
  EXPECT_TRUE(std::equal(disk.bytes.begin(), disk.bytes.begin() + 2 * kPiece, s.content.begin()));
  std::filesystem::remove_all(s.store);
}

TEST(DeliveryStream, ADiskNotHoldingTheBaseThereIsNotWritten) {
  Streamed s = make_stream("drifted");
  MemoryDisk disk = base_disk(s);
  disk.bytes[5 * kPiece + 4096 * 5] ^= std::byte{1};  // drift in piece 5, outside the run
  const auto drifted = disk.bytes;
  auto stats = receive_bytes(s, s.stream, disk);
  ASSERT_TRUE(stats.ok()) << stats.error().message;
  EXPECT_EQ(stats->missing, (std::vector<uint64_t>{5}));
  EXPECT_TRUE(std::equal(disk.bytes.begin() + 5 * kPiece, disk.bytes.end(), drifted.begin() + 5 * kPiece));
  std::filesystem::remove_all(s.store);
}

TEST(DeliveryStream, AStreamOfOtherIndexesWritesNothing) {
  Streamed s = make_stream("other");
  for (const size_t at : {40, 70}) {  // the newest's index SHA-256, the base's
    auto stream = s.stream;
    stream[at] ^= std::byte{1};
    MemoryDisk disk = base_disk(s);
    auto stats = receive_bytes(s, stream, disk);
    ASSERT_FALSE(stats.ok());
    EXPECT_NE(stats.error().message.find("other content indexes"), std::string::npos);
    EXPECT_EQ(disk.bytes, s.before);
  }
  std::filesystem::remove_all(s.store);
}

TEST(DeliveryStream, ACutStreamKeepsWhatArrivedAndListsWhatIsMissing) {
  Streamed s = make_stream("cut");
  auto stream = s.stream;
  stream.resize(record_at(s, 1) + 16 + 12 + 10);  // inside piece 3's bytes
  MemoryDisk disk = base_disk(s);
  auto stats = receive_bytes(s, stream, disk);
  ASSERT_TRUE(stats.ok()) << stats.error().message;
  EXPECT_FALSE(stats->complete);
  EXPECT_EQ(stats->received, 1u);
  EXPECT_EQ(stats->missing, (std::vector<uint64_t>{3, 4, 5}));
  EXPECT_NE(stats->stopped.find("1 of 4"), std::string::npos);
  EXPECT_TRUE(std::equal(disk.bytes.begin(), disk.bytes.begin() + 2 * kPiece, s.content.begin()));
  // No session at all: every changed piece missing, nothing written.
  MemoryDisk untouched = base_disk(s);
  stats = receive_bytes(s, {}, untouched);
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->missing.size(), 4u);
  EXPECT_EQ(untouched.bytes, s.before);
  std::filesystem::remove_all(s.store);
}

TEST(DeliveryStream, APieceNotChangedOrARunOutsideThePieceStopsTheStream) {
  Streamed s = make_stream("order");
  auto stream = s.stream;
  stream[record_at(s, 1)] = std::byte{2};  // record 1 names piece 2, which the version does not change
  MemoryDisk disk = base_disk(s);
  auto stats = receive_bytes(s, stream, disk);
  ASSERT_TRUE(stats.ok()) << stats.error().message;
  EXPECT_FALSE(stats->complete);
  EXPECT_EQ(stats->received, 1u);
  EXPECT_NE(stats->stopped.find("names piece 2"), std::string::npos);
  stream = s.stream;
  stream[record_at(s, 0) + 16 + 2] = std::byte{0x7f};  // piece 1's run offset far outside the piece
  disk = base_disk(s);
  stats = receive_bytes(s, stream, disk);
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->received, 0u);
  EXPECT_NE(stats->stopped.find("run table"), std::string::npos);
  EXPECT_EQ(disk.bytes, s.before);
  std::filesystem::remove_all(s.store);
}

TEST(DeliveryStream, TheSenderRefusesADamagedStorePiece) {
  Streamed s = make_stream("damaged");
  const auto path = s.store / chunk_path(s.index.pieces[3]);
  std::filesystem::resize_file(path, 100);
  const int fd = ::open("/dev/null", O_WRONLY);
  auto written = write_stream(fd, s.indexes(), s.pieces, s.store);
  ::close(fd);
  ASSERT_FALSE(written.ok());
  EXPECT_NE(written.error().message.find(path.string()), std::string::npos);
  std::filesystem::remove_all(s.store);
}

TEST(DeliveryCommands, ReceiverAndSenderArguments) {
  MulticastSession session = session_on("10.0.0.1", 24);
  session.portbase = 9100;
  const auto receiver = receiver_command(session, "eth0");
  EXPECT_EQ(receiver[0], "udp-receiver");
  EXPECT_NE(std::find(receiver.begin(), receiver.end(), "9100"), receiver.end());
  EXPECT_NE(std::find(receiver.begin(), receiver.end(), "--start-timeout"), receiver.end());
  SenderOptions options;
  options.interface = "br0";
  options.max_bitrate = "600m";
  const auto sender = sender_command(session, options);
  EXPECT_EQ(sender[0], "udp-sender");
  EXPECT_NE(std::find(sender.begin(), sender.end(), "600m"), sender.end());
  EXPECT_NE(std::find(sender.begin(), sender.end(), "--retries-until-drop"), sender.end());
  // udpcast's own timers cost every session seconds (docs/delivery.md): the
  // sender re-checks its start condition every 200 ms, not every 2 s, and a
  // receiver lingers 100 ms after the end, not 500.
  const auto after = [](const std::vector<std::string>& command, const std::string& option) {
    const auto at = std::find(command.begin(), command.end(), option);
    return at == command.end() || at + 1 == command.end() ? std::string() : *(at + 1);
  };
  EXPECT_EQ(after(sender, "--rexmit-hello-interval"), "200");
  EXPECT_EQ(after(receiver, "--exit-wait"), "100");
}

// udp-sender's --max-bitrate, as udpcast parses it (k and m only, into an
// int): anything else is refused before udp-sender sees it.
TEST(DeliveryBitrate, TakesWhatUdpSenderTakes) {
  EXPECT_EQ(parse_max_bitrate("600m"), 600000000u);
  EXPECT_EQ(parse_max_bitrate("600M"), 600000000u);
  EXPECT_EQ(parse_max_bitrate("90k"), 90000u);
  EXPECT_EQ(parse_max_bitrate("2000m"), 2000000000u);
  EXPECT_EQ(parse_max_bitrate("5000000"), 5000000u);
  for (const char* bad : {"", "m", "1g", "600 m", "600mb", "-5m", "0", "0m", "999", "2001m", "99999999999m", "6e8"})
    EXPECT_FALSE(parse_max_bitrate(bad).has_value()) << bad;
}

}  // namespace
}  // namespace troy::cli::delivery_test
