// The verifying HTTP source (lab/http_source.h) against a tiny HTTP server in
// the test process, which answers Range requests correctly or breaks HTTP in
// one chosen way: a piece tampered with, a short or oversized body, Range
// ignored, another file size, transient 503s, a 404.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "chunk_index.h"
#include "http_source.h"
#include "manifest.h"

namespace troy::http_source_test {
namespace {

using namespace troy::cli;

enum class Mode { Ranges, IgnoresRange, ShortBody, LongBody, OtherFileSize, OtherRange };

// One connection at a time, each closed after its answer.
class TinyServer {
 public:
  explicit TinyServer(std::vector<std::byte> served) : served_(std::move(served)) {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
    socklen_t length = sizeof address;
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    EXPECT_EQ(::listen(listener_, 8), 0);
    worker_ = std::thread([this] { serve(); });
  }
  ~TinyServer() {
    ::shutdown(listener_, SHUT_RDWR);
    worker_.join();
    ::close(listener_);
  }
  std::string url() const { return fmt::format("http://127.0.0.1:{}/versions/v2.vhd", port_); }

  std::atomic<Mode> mode{Mode::Ranges};
  int unavailable_first = 0;  // answer the first N requests with 503
  bool not_found = false;
  std::atomic<int> requests{0};
  std::atomic<uint64_t> bytes_sent{0};

 private:
  void serve() {
    while (true) {
      const int connection = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (connection < 0) return;
      answer(connection);
      ::close(connection);
    }
  }

  void answer(int connection) {
    std::string request;
    char buffer[4096];
    while (request.find("\r\n\r\n") == std::string::npos) {
      const ssize_t got = ::recv(connection, buffer, sizeof buffer, 0);
      if (got <= 0) return;
      request.append(buffer, static_cast<size_t>(got));
    }
    const int number = ++requests;
    if (number <= unavailable_first) return send_text(connection, "HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n");
    if (not_found) return send_text(connection, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    uint64_t first = 0, last = served_.size() - 1;
    const size_t range = request.find("Range: bytes=");
    if (range != std::string::npos && mode != Mode::IgnoresRange)
      std::sscanf(request.c_str() + range, "Range: bytes=%lu-%lu", &first, &last);
    else
      return send_body(connection, fmt::format("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", served_.size()), 0,
                       served_.size());
    uint64_t length = last - first + 1, total = served_.size();
    std::string claimed = fmt::format("bytes {}-{}/{}", first, last, total);
    if (mode == Mode::ShortBody) length -= 1;
    if (mode == Mode::LongBody) length = std::min<uint64_t>(length + 100, total - first);
    if (mode == Mode::OtherFileSize) claimed = fmt::format("bytes {}-{}/{}", first, last, total + 4096);
    if (mode == Mode::OtherRange) claimed = fmt::format("bytes {}-{}/{}", first + 1, last, total);
    send_body(connection,
              fmt::format("HTTP/1.1 206 Partial Content\r\nContent-Range: {}\r\nContent-Length: {}\r\n"
                          "Connection: close\r\n\r\n",
                          claimed, length),
              first, length);
  }
  void send_text(int connection, const std::string& text) {
    ::send(connection, text.data(), text.size(), MSG_NOSIGNAL);
  }
  void send_body(int connection, const std::string& head, uint64_t first, uint64_t length) {
    send_text(connection, head);
    const ssize_t sent = ::send(connection, served_.data() + first, length, MSG_NOSIGNAL);
    if (sent > 0) bytes_sent += static_cast<uint64_t>(sent);
  }

  std::vector<std::byte> served_;
  int listener_ = -1;
  uint16_t port_ = 0;
  std::thread worker_;
};

constexpr uint32_t kPiece = 64 << 10;

std::vector<std::byte> random_file(size_t size, unsigned seed) {
  std::mt19937 generator(seed);
  std::vector<std::byte> bytes(size);
  for (auto& byte : bytes) byte = static_cast<std::byte>(generator());
  return bytes;
}

PieceTable table_of(const std::vector<std::byte>& file) {
  MemorySource source("file", file);
  auto index = index_source(source, kPiece);
  EXPECT_TRUE(index.ok());
  return piece_table(*index, "v2.vhd.index");
}

HttpReadOptions quick() {
  HttpReadOptions options;
  options.first_pause_ms = 1;
  options.attempts = 3;
  return options;
}

std::vector<std::byte> read(const HttpRangeSource& source, uint64_t offset, size_t length, Result<void>* outcome = nullptr) {
  std::vector<std::byte> out(length);
  auto result = source.read_at(offset, out);
  if (outcome) *outcome = result;
  else EXPECT_TRUE(result.ok()) << result.error().message;
  return out;
}

TEST(HttpRangeSource, ReadsEveryRangeAsServedAndCachesVerifiedPieces) {
  const auto file = random_file(10 * kPiece + 1000, 1);
  TinyServer server(file);
  auto source = HttpRangeSource::open(server.url(), table_of(file), quick());
  ASSERT_TRUE(source.ok()) << source.error().message;
  EXPECT_EQ((*source)->size(), file.size());
  for (const auto& [offset, length] : std::vector<std::pair<uint64_t, size_t>>{
           {0, 512}, {kPiece - 10, 20}, {3 * kPiece + 7, 2 * kPiece}, {file.size() - 1000, 1000}, {0, file.size()}}) {
    const auto got = read(**source, offset, length);
    EXPECT_EQ(0, std::memcmp(got.data(), file.data() + offset, length)) << offset;
  }
  // Metadata-sized reads inside one piece: one request, then the cache.
  auto again = HttpRangeSource::open(server.url(), table_of(file), quick());
  const int before = server.requests;
  for (int i = 0; i < 50; i++) read(**again, 5 * kPiece + static_cast<uint64_t>(i) * 512, 512);
  EXPECT_EQ(server.requests - before, 1);
  EXPECT_EQ((*again)->stats().bytes_fetched, kPiece);
}

TEST(HttpRangeSource, ReadPastTheEndIsAnError) {
  const auto file = random_file(2 * kPiece, 2);
  TinyServer server(file);
  auto source = HttpRangeSource::open(server.url(), table_of(file), quick());
  Result<void> outcome;
  read(**source, 2 * kPiece - 10, 20, &outcome);
  EXPECT_FALSE(outcome.ok());
  EXPECT_EQ(server.requests, 0);
}

TEST(HttpRangeSource, RefusesATamperedPieceNamingTheUrlAndThePiece) {
  const auto file = random_file(6 * kPiece, 3);
  auto tampered = file;
  tampered[3 * kPiece + 100] ^= std::byte{1};
  TinyServer server(tampered);
  auto source = HttpRangeSource::open(server.url(), table_of(file), quick());
  const auto good = read(**source, 0, kPiece);
  EXPECT_EQ(0, std::memcmp(good.data(), file.data(), kPiece));
  Result<void> outcome;
  const auto bad = read(**source, 3 * kPiece, 16, &outcome);
  ASSERT_FALSE(outcome.ok());
  EXPECT_NE(outcome.error().message.find(server.url()), std::string::npos) << outcome.error().message;
  EXPECT_NE(outcome.error().message.find("piece 3 "), std::string::npos) << outcome.error().message;
  EXPECT_NE(outcome.error().message.find("v2.vhd.index"), std::string::npos) << outcome.error().message;
  EXPECT_EQ(outcome.error().message.find('\n'), std::string::npos);
  // Nothing of the piece came out, and it is not retried as if transient.
  EXPECT_EQ(bad, std::vector<std::byte>(16));
  EXPECT_EQ(server.requests, 2);
}

TEST(HttpRangeSource, RefusesAServerThatIgnoresRange) {
  const auto file = random_file(64 * kPiece, 4);
  TinyServer server(file);
  server.mode = Mode::IgnoresRange;
  auto source = HttpRangeSource::open(server.url(), table_of(file), quick());
  Result<void> outcome;
  read(**source, kPiece, 100, &outcome);
  ASSERT_FALSE(outcome.ok());
  EXPECT_NE(outcome.error().message.find("ignores Range"), std::string::npos) << outcome.error().message;
  // Stopped at the first bytes, not after the whole file.
  EXPECT_LT((*source)->stats().bytes_fetched, file.size() / 2);
}

TEST(HttpRangeSource, RefusesShortOversizedOrMislabelledAnswers) {
  const auto file = random_file(4 * kPiece, 5);
  for (const auto& [mode, expected] : std::vector<std::pair<Mode, std::string>>{
           {Mode::ShortBody, "bytes of the"},
           {Mode::LongBody, "more than the"},
           {Mode::OtherFileSize, "the file on the server is"},
           {Mode::OtherRange, "another range"}}) {
    TinyServer server(file);
    server.mode = mode;
    auto source = HttpRangeSource::open(server.url(), table_of(file), quick());
    Result<void> outcome;
    read(**source, 0, 100, &outcome);
    ASSERT_FALSE(outcome.ok()) << expected;
    EXPECT_NE(outcome.error().message.find(expected), std::string::npos) << outcome.error().message;
  }
}

TEST(HttpRangeSource, OpeningARemoteImageReadsItsFirstPieceSoFaultsShowThere) {
  const auto file = random_file(4 * kPiece, 8);
  TinyServer server(file);
  server.mode = Mode::OtherFileSize;
  auto refused = open_remote_image(server.url(), table_of(file), quick());
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("the file on the server is"), std::string::npos) << refused.error().message;
  server.mode = Mode::Ranges;
  auto opened = open_remote_image(server.url(), table_of(file), quick());
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  EXPECT_EQ((*opened)->stats().bytes_fetched, kPiece);
}

TEST(HttpRangeSource, RetriesTransientErrorsThenGivesUp) {
  const auto file = random_file(2 * kPiece, 6);
  {
    TinyServer server(file);
    server.unavailable_first = 2;
    auto source = HttpRangeSource::open(server.url(), table_of(file), quick());
    const auto got = read(**source, 0, 2 * kPiece);
    EXPECT_EQ(got, file);
    EXPECT_EQ((*source)->stats().retries, 2u);
  }
  {
    TinyServer server(file);
    server.unavailable_first = 100;
    auto source = HttpRangeSource::open(server.url(), table_of(file), quick());
    Result<void> outcome;
    read(**source, 0, 10, &outcome);
    ASSERT_FALSE(outcome.ok());
    EXPECT_NE(outcome.error().message.find("HTTP 503 (after 3 attempts)"), std::string::npos) << outcome.error().message;
  }
  {
    TinyServer server(file);
    server.not_found = true;
    auto source = HttpRangeSource::open(server.url(), table_of(file), quick());
    Result<void> outcome;
    read(**source, 0, 10, &outcome);
    ASSERT_FALSE(outcome.ok());
    EXPECT_NE(outcome.error().message.find("HTTP 404"), std::string::npos);
    EXPECT_EQ(server.requests, 1);  // not transient
  }
}

TEST(HttpRangeSource, NeverFetchesAPieceTheIndexSaysIsZeros) {
  auto file = random_file(4 * kPiece, 7);
  std::fill(file.begin() + kPiece, file.begin() + 3 * kPiece, std::byte{0});
  TinyServer server(file);
  auto source = HttpRangeSource::open(server.url(), table_of(file), quick());
  EXPECT_EQ(read(**source, kPiece + 5, 2 * kPiece - 5), std::vector<std::byte>(2 * kPiece - 5));
  EXPECT_EQ(server.requests, 0);
  EXPECT_EQ(read(**source, 0, 4 * kPiece), file);
  EXPECT_EQ(server.requests, 2);  // the pieces on either side of the zeros
}

TEST(HttpRangeSource, RefusesAPieceTableWithAGapOrNotCoveringTheFile) {
  PieceTable table{"idx", 100, {{0, 50, {}}, {60, 40, {}}}};
  EXPECT_FALSE(check_piece_table(table).ok());
  table.pieces = {{0, 50, {}}};
  EXPECT_FALSE(check_piece_table(table).ok());
  table.pieces = {{0, 50, {}}, {50, 50, {}}};
  EXPECT_TRUE(check_piece_table(table).ok());
  EXPECT_FALSE(HttpRangeSource::open("ftp://x/y", table).ok());
}

// The manifest's file-index line: round trip, and only after its delta.
TEST(ManifestFileIndex, RoundTripsAndIsRefusedWithoutItsDelta) {
  const std::string sha(64, 'a');
  const std::string delta = fmt::format("version v2 delta v1 versions/v2.vhd 100 {} versions/v2.fingerprint 10 {} ab\n",
                                        sha, sha);
  const std::string text = "troy-manifest 1\ndisk-size 1024\nversion v1 base aa\n" + delta +
                           fmt::format("file-index v2 versions/v2.vhd.index 64 {}\n", sha);
  auto manifest = parse_manifest(text, "manifest");
  ASSERT_TRUE(manifest.ok()) << manifest.error().message;
  EXPECT_EQ(manifest->versions[1].file_index, "versions/v2.vhd.index");
  EXPECT_EQ(manifest->versions[1].file_index_size, 64u);
  EXPECT_EQ(serialize(*manifest), text);
  for (const std::string& bad : {fmt::format("file-index v1 versions/v1.index 64 {}\n", sha),
                                 fmt::format("file-index v3 versions/v3.index 64 {}\n", sha),
                                 fmt::format("file-index v2 ../v2.index 64 {}\n", sha),
                                 std::string("file-index v2 versions/v2.vhd.index 64 xyz\n")}) {
    auto refused = parse_manifest("troy-manifest 1\ndisk-size 1024\nversion v1 base aa\n" + delta + bad, "manifest");
    EXPECT_FALSE(refused.ok()) << bad;
  }
  auto twice = parse_manifest(text + fmt::format("file-index v2 versions/v2.vhd.index 64 {}\n", sha), "manifest");
  EXPECT_FALSE(twice.ok());
}

}  // namespace
}  // namespace troy::http_source_test
