// LabSource over HTTP against a rogue server in the test process that
// answers every request with a body far larger than asked for: every fetch
// stops at its cap (a fixed limit for small files, the manifest's size for a
// delta), so the server can fill neither RAM nor the work folder.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "source.h"

namespace troy::lab_source_http_test {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kRogueBody = 256 << 20;  // what the server offers
constexpr uint64_t kBounded = 64 << 20;     // a cut transfer leaves at most socket buffers in flight

// Serves connections one after another until destroyed: reads the request,
// then sends kRogueBody bytes (with or without Content-Length) until the
// client hangs up. Counts what it managed to send.
class RogueServer {
 public:
  explicit RogueServer(bool content_length) : content_length_(content_length) {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    if (::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 || ::listen(listener_, 4) != 0 ||
        ::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length) != 0)
      ADD_FAILURE() << "cannot listen on 127.0.0.1";
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~RogueServer() {
    stop_ = true;
    ::shutdown(listener_, SHUT_RDWR);
    thread_.join();
    ::close(listener_);
  }
  std::string url() const { return fmt::format("http://127.0.0.1:{}", port_); }
  uint64_t sent() const { return sent_; }

 private:
  void serve() {
    while (!stop_) {
      const int client = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) return;
      answer(client);
      ::close(client);
    }
  }
  void answer(int client) {
    std::string request;
    char buffer[4096];
    while (request.find("\r\n\r\n") == std::string::npos) {
      const ssize_t got = ::recv(client, buffer, sizeof buffer, 0);
      if (got <= 0) return;
      request.append(buffer, static_cast<size_t>(got));
    }
    const std::string head = content_length_
                                 ? fmt::format("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", kRogueBody)
                                 : std::string("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
    if (::send(client, head.data(), head.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(head.size())) return;
    const std::vector<char> chunk(1 << 16, 'x');
    for (uint64_t done = 0; done < kRogueBody && !stop_;) {
      const ssize_t put = ::send(client, chunk.data(), chunk.size(), MSG_NOSIGNAL);
      if (put <= 0) return;  // the client hung up: the cap worked
      done += static_cast<uint64_t>(put);
      sent_ += static_cast<uint64_t>(put);
    }
  }

  bool content_length_;
  int listener_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> sent_{0};
  std::thread thread_;
};

class RogueHttp : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    work_ = fs::temp_directory_path() / fmt::format("troy-rogue-{}-{}", ::getpid(), GetParam());
    fs::create_directories(work_);
    auto opened = cli::LabSource::open(server_.url());
    ASSERT_TRUE(opened) << opened.error().message;
    source_ = std::move(*opened);
  }
  void TearDown() override { fs::remove_all(work_); }

  RogueServer server_{GetParam()};
  fs::path work_;
  std::unique_ptr<cli::LabSource> source_;
};

TEST_P(RogueHttp, ASmallFileStopsAtItsCap) {
  auto text = source_->fetch_small("manifest", 1 << 20);
  ASSERT_FALSE(text) << "a 256 MiB answer was taken whole as a manifest";
  EXPECT_NE(text.error().message.find(server_.url() + "/manifest: larger than 1048576 bytes"), std::string::npos)
      << text.error().message;
  EXPECT_LT(server_.sent(), kBounded);
}

TEST_P(RogueHttp, ADeltaStopsAtTheManifestsSize) {
  const std::string destination = (work_ / "v2.avhdx").string();
  const std::string sha256(64, '0');
  auto fetched = source_->fetch_checked("versions/v2.avhdx", 1 << 20, sha256, destination);
  ASSERT_FALSE(fetched) << "a delta larger than the manifest says was taken";
  EXPECT_NE(fetched.error().message.find("more than the 1048576 bytes the manifest gives"), std::string::npos)
      << fetched.error().message;
  EXPECT_LT(server_.sent(), kBounded);
  EXPECT_FALSE(fs::exists(destination));
  EXPECT_FALSE(fs::exists(destination + ".part"));
}

INSTANTIATE_TEST_SUITE_P(LabSource, RogueHttp, ::testing::Bool(), [](const auto& param_info) {
  return param_info.param ? std::string("WithContentLength") : std::string("UntilClose");
});

}  // namespace
}  // namespace troy::lab_source_http_test
