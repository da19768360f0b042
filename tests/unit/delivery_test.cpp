#include "delivery.h"

#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "chunk_store.h"

namespace troy::cli {
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
  auto parsed = parse_announcement(format_announcement(session), "delivery");
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed->version, "v3");
  EXPECT_EQ(parsed->index_sha256, kSha);
  EXPECT_EQ(format_ipv4(parsed->sender), "10.0.0.1");
  EXPECT_EQ(parsed->prefix, 24u);
  EXPECT_EQ(parsed->portbase, 9100u);
  EXPECT_EQ(parsed->ttl, 4u);
  EXPECT_EQ(parsed->wait, 30u);
}

TEST(DeliveryAnnouncement, RefusesBadFieldsNamingThem) {
  const std::string good = "multicast version=v3 index=" + kSha + " sender=10.0.0.1/24";
  EXPECT_TRUE(parse_announcement(good, "delivery").ok());
  const auto error_of = [](const std::string& text) {
    auto parsed = parse_announcement(text, "delivery");
    return parsed.ok() ? std::string("accepted") : parsed.error().message;
  };
  EXPECT_NE(error_of(good + " ttl=0").find("field ttl"), std::string::npos);
  EXPECT_NE(error_of(good + " portbase=70000").find("field portbase"), std::string::npos);
  EXPECT_NE(error_of(good + " colour=red").find("unknown field 'colour'"), std::string::npos);
  EXPECT_NE(error_of("multicast version=v3 index=XYZ sender=10.0.0.1/24").find("field index"), std::string::npos);
  EXPECT_NE(error_of("multicast version=v3 index=" + kSha + " sender=10.0.0.999/24").find("field sender"),
            std::string::npos);
  EXPECT_NE(error_of("multicast version=v3 index=" + kSha).find("needs"), std::string::npos);
  EXPECT_NE(error_of("unicast " + good).find("not 'multicast'"), std::string::npos);
  EXPECT_NE(error_of(good + "\n" + good).find("more than one line"), std::string::npos);
  EXPECT_NE(error_of("").find("empty"), std::string::npos);
}

TEST(DeliveryChoice, MulticastOnTheSendersSubnet) {
  const std::vector<LocalAddress> addresses = {{"eth0", *parse_ipv4("10.0.0.57"), 24}};
  const auto choice = choose_delivery(session_on("10.0.0.1", 24), "v3", kSha, addresses, true);
  EXPECT_EQ(choice.path, DeliveryPath::Multicast);
  EXPECT_EQ(choice.interface, "eth0");
}

TEST(DeliveryChoice, HttpWithoutASessionOrForAnotherVersion) {
  const std::vector<LocalAddress> addresses = {{"eth0", *parse_ipv4("10.0.0.57"), 24}};
  auto choice = choose_delivery(std::nullopt, "v3", kSha, addresses, true);
  EXPECT_EQ(choice.path, DeliveryPath::Http);
  EXPECT_NE(choice.why.find("no multicast session"), std::string::npos);
  // A session still sending v2 (the server published v3 since).
  MulticastSession old = session_on("10.0.0.1", 24);
  old.version = "v2";
  choice = choose_delivery(old, "v3", kSha, addresses, true);
  EXPECT_EQ(choice.path, DeliveryPath::Http);
  EXPECT_NE(choice.why.find("sends v2"), std::string::npos);
  // Same name, another index (republished): HTTP too.
  choice = choose_delivery(session_on("10.0.0.1", 24), "v3", std::string(64, 'b'), addresses, true);
  EXPECT_EQ(choice.path, DeliveryPath::Http);
}

TEST(DeliveryChoice, HttpWithoutTheReceiver) {
  const std::vector<LocalAddress> addresses = {{"eth0", *parse_ipv4("10.0.0.57"), 24}};
  const auto choice = choose_delivery(session_on("10.0.0.1", 24), "v3", kSha, addresses, false);
  EXPECT_EQ(choice.path, DeliveryPath::Http);
  EXPECT_NE(choice.why.find("udp-receiver"), std::string::npos);
}

TEST(DeliveryChoice, AnotherSubnetTakesHttpUnlessTheSessionIsRouted) {
  const std::vector<LocalAddress> addresses = {{"eth1", *parse_ipv4("10.0.1.57"), 24}};
  auto choice = choose_delivery(session_on("10.0.0.1", 24), "v3", kSha, addresses, true);
  EXPECT_EQ(choice.path, DeliveryPath::Http);
  EXPECT_NE(choice.why.find("10.0.0.0/24"), std::string::npos);
  MulticastSession routed = session_on("10.0.0.1", 24);
  routed.ttl = 8;
  choice = choose_delivery(routed, "v3", kSha, addresses, true);
  EXPECT_EQ(choice.path, DeliveryPath::Multicast);
  EXPECT_EQ(choice.interface, "eth1");
  // A /16 session covers both.
  choice = choose_delivery(session_on("10.0.0.1", 16), "v3", kSha, addresses, true);
  EXPECT_EQ(choice.path, DeliveryPath::Multicast);
}

TEST(DeliveryStream, CarriesTheChangedNonZeroPieces) {
  auto before = pattern(kPiece * 6, 1);
  auto after = before;
  std::fill_n(after.begin() + 2 * kPiece, kPiece, std::byte{0});  // piece 2 becomes zeros
  after[4 * kPiece + 7] ^= std::byte{1};                          // piece 4 changes
  const ChunkIndex old_index = index_of(before), new_index = index_of(after);
  EXPECT_EQ(pieces_to_stream(new_index, &old_index), (std::vector<uint64_t>{4}));
  EXPECT_EQ(pieces_to_stream(new_index, nullptr), (std::vector<uint64_t>{0, 1, 3, 4, 5}));
}

struct Streamed {
  std::filesystem::path store;
  ChunkIndex index;
  Sha256 index_sha{};
  std::vector<std::byte> content;
  std::vector<std::byte> stream;  // as udp-receiver would hand it over
};

std::vector<std::byte> read_fd(int fd) {
  std::vector<std::byte> all;
  std::byte buffer[65536];
  ssize_t got;
  while ((got = ::read(fd, buffer, sizeof buffer)) > 0) all.insert(all.end(), buffer, buffer + got);
  return all;
}

// Five pieces, the last half a piece long, written through a pipe.
Streamed make_stream(const std::string& name) {
  Streamed s;
  s.store = std::filesystem::temp_directory_path() / ("troy-delivery-" + name + std::to_string(::getpid()));
  std::filesystem::create_directories(s.store);
  s.content = pattern(kPiece * 4 + kPiece / 2, 7);
  s.index = index_of(s.content);
  s.index_sha = sha256(serialize(s.index));
  ChunkStoreStats stats;
  for (size_t i = 0; i < s.index.piece_count(); i++)
    EXPECT_TRUE(store_piece(s.store, s.index.pieces[i],
                            std::span(s.content).subspan(s.index.piece_offset(i), s.index.piece_length(i)), stats)
                    .ok());
  int ends[2];
  EXPECT_EQ(::pipe(ends), 0);
  std::thread reader([&] { s.stream = read_fd(ends[0]); });
  auto written = write_stream(ends[1], s.index, s.index_sha, pieces_to_stream(s.index, nullptr), s.store);
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
    std::fwrite(stream.data(), 1, stream.size(), file);
    std::fclose(file);
  }
  const int fd = ::open(path.c_str(), O_RDONLY);
  auto result = receive_stream(fd, s.index, s.index_sha, disk, [&](const std::string& line) {
    if (said) said->push_back(line);
  });
  ::close(fd);
  return result;
}

// Where record `k`'s piece bytes start in a stream of every piece.
size_t body_at(const Streamed&, size_t k) { return 64 + k * (8 + size_t{kPiece}) + 8; }

TEST(DeliveryStream, ReceivedByteForByte) {
  Streamed s = make_stream("whole");
  MemoryDisk disk(s.content.size());
  auto stats = receive_bytes(s, s.stream, disk);
  ASSERT_TRUE(stats.ok()) << stats.error().message;
  EXPECT_TRUE(stats->complete);
  EXPECT_EQ(stats->received, 5u);
  EXPECT_EQ(disk.bytes, s.content);
  std::filesystem::remove_all(s.store);
}

TEST(DeliveryStream, ATamperedPieceIsRefusedAndNeverWritten) {
  Streamed s = make_stream("tampered");
  auto stream = s.stream;
  stream[body_at(s, 2) + 100] ^= std::byte{0x80};
  MemoryDisk disk(s.content.size());
  std::vector<std::string> said;
  auto stats = receive_bytes(s, stream, disk, &said);
  ASSERT_TRUE(stats.ok()) << stats.error().message;
  EXPECT_EQ(stats->refused, 1u);
  EXPECT_EQ(stats->received, 4u);
  ASSERT_EQ(said.size(), 1u);
  EXPECT_NE(said[0].find("piece 2"), std::string::npos);
  // Piece 2 untouched (zeros), the others written.
  EXPECT_TRUE(std::all_of(disk.bytes.begin() + 2 * kPiece, disk.bytes.begin() + 3 * kPiece,
                          [](std::byte b) { return b == std::byte{0}; }));
  EXPECT_TRUE(std::equal(disk.bytes.begin(), disk.bytes.begin() + 2 * kPiece, s.content.begin()));
  std::filesystem::remove_all(s.store);
}

TEST(DeliveryStream, AStreamOfAnotherIndexWritesNothing) {
  Streamed s = make_stream("other");
  auto stream = s.stream;
  stream[40] ^= std::byte{1};  // the index SHA-256 in the header
  MemoryDisk disk(s.content.size());
  auto stats = receive_bytes(s, stream, disk);
  ASSERT_FALSE(stats.ok());
  EXPECT_NE(stats.error().message.find("another content index"), std::string::npos);
  EXPECT_TRUE(std::all_of(disk.bytes.begin(), disk.bytes.end(), [](std::byte b) { return b == std::byte{0}; }));
  std::filesystem::remove_all(s.store);
}

TEST(DeliveryStream, ACutStreamKeepsWhatArrivedAndSaysItIsIncomplete) {
  Streamed s = make_stream("cut");
  auto stream = s.stream;
  stream.resize(body_at(s, 3) + 10);  // inside piece 3
  MemoryDisk disk(s.content.size());
  auto stats = receive_bytes(s, stream, disk);
  ASSERT_TRUE(stats.ok()) << stats.error().message;
  EXPECT_FALSE(stats->complete);
  EXPECT_EQ(stats->received, 3u);
  EXPECT_NE(stats->stopped.find("3 of 5"), std::string::npos);
  EXPECT_TRUE(std::equal(disk.bytes.begin(), disk.bytes.begin() + 3 * kPiece, s.content.begin()));
  std::filesystem::remove_all(s.store);
}

TEST(DeliveryStream, AnOutOfOrderPieceNumberStopsTheStream) {
  Streamed s = make_stream("order");
  auto stream = s.stream;
  stream[body_at(s, 1) - 8] = std::byte{0};  // record 1 names piece 0 again
  MemoryDisk disk(s.content.size());
  auto stats = receive_bytes(s, stream, disk);
  ASSERT_TRUE(stats.ok()) << stats.error().message;
  EXPECT_FALSE(stats->complete);
  EXPECT_EQ(stats->received, 1u);
  EXPECT_NE(stats->stopped.find("names piece 0"), std::string::npos);
  std::filesystem::remove_all(s.store);
}

TEST(DeliveryStream, TheSenderRefusesADamagedStorePiece) {
  Streamed s = make_stream("damaged");
  const auto path = s.store / chunk_path(s.index.pieces[1]);
  std::filesystem::resize_file(path, 100);
  const int fd = ::open("/dev/null", O_WRONLY);
  auto written = write_stream(fd, s.index, s.index_sha, pieces_to_stream(s.index, nullptr), s.store);
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
}

}  // namespace
}  // namespace troy::cli
