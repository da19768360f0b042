#include "chunk_fetch.h"

#include <curl/curl.h>
#include <unistd.h>

#include <filesystem>

#include <fmt/format.h>

namespace troy::cli {

namespace {

constexpr int kAttempts = 4;

struct Body {
  std::vector<std::byte> bytes;
  uint64_t max_bytes = 0;
  bool too_large = false;
};

size_t on_data(char* data, size_t size, size_t count, void* user) {
  auto* body = static_cast<Body*>(user);
  const size_t length = size * count;
  if (body->bytes.size() + length > body->max_bytes) {
    body->too_large = true;
    return 0;  // stops the transfer
  }
  const auto* first = reinterpret_cast<const std::byte*>(data);
  body->bytes.insert(body->bytes.end(), first, first + length);
  return length;
}

// One GET, with a Range when `range` is not empty; `expect` is the status
// that means success (206 for a range: a 200 would be the whole file).
Result<std::vector<std::byte>> get_once(const std::string& url, const std::string& range, long expect,
                                        uint64_t max_bytes, bool& transient) {
  transient = false;
  CURL* curl = curl_easy_init();
  if (curl == nullptr) return Error{"libcurl could not start"};
  Body body;
  body.max_bytes = max_bytes;
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 15L);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1024L);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  if (!range.empty()) curl_easy_setopt(curl, CURLOPT_RANGE, range.c_str());
  const CURLcode code = curl_easy_perform(curl);
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_cleanup(curl);
  if (body.too_large) return Error{fmt::format("{}: more than the {} bytes expected", url, max_bytes)};
  if (code != CURLE_OK) {
    transient = true;
    return Error{fmt::format("{}: {}", url, curl_easy_strerror(code))};
  }
  if (status != expect) {
    transient = status >= 500 || status == 408 || status == 429;
    return Error{fmt::format("{}: HTTP {}{}", url, status,
                             status == 200 && expect == 206 ? " (the server ignored the Range request)" : "")};
  }
  return std::move(body.bytes);
}

Result<std::vector<std::byte>> get(const std::string& url, const std::string& range, long expect,
                                   uint64_t max_bytes) {
  for (int attempt = 1;; attempt++) {
    bool transient = false;
    auto result = get_once(url, range, expect, max_bytes, transient);
    if (result || !transient || attempt == kAttempts) return result;
    ::sleep(static_cast<unsigned>(attempt));
  }
}

class HttpChunkStore final : public ChunkStore {
 public:
  explicit HttpChunkStore(std::string root) : root_(std::move(root)) {
    while (!root_.empty() && root_.back() == '/') root_.pop_back();
  }
  Result<std::vector<std::byte>> fetch(const Sha256& sha, uint32_t offset, uint32_t length) override {
    const std::string url = root_ + "/" + chunk_path(sha);
    TROY_ASSIGN(bytes, get(url, fmt::format("{}-{}", offset, uint64_t{offset} + length - 1), 206, length));
    if (bytes.size() != length)
      return Error{fmt::format("{}: {} bytes came for the {} asked at offset {}", url, bytes.size(), length, offset)};
    return bytes;
  }
  Result<std::vector<std::byte>> fetch_units(const Sha256& sha) override {
    return get(root_ + "/" + units_path(sha), "", 200, kMaxPieceSize / kChunkUnit * 4);
  }
  const std::string& location() const override { return root_; }

 private:
  std::string root_;
};

}  // namespace

bool is_http_location(const std::string& location) {
  return location.starts_with("http://") || location.starts_with("https://");
}

Result<std::vector<std::byte>> fetch_url(const std::string& url, uint64_t max_bytes) {
  return get(url, "", 200, max_bytes);
}

Result<std::unique_ptr<ChunkStore>> open_chunk_store(const std::string& root) {
  if (is_http_location(root)) return std::unique_ptr<ChunkStore>(std::make_unique<HttpChunkStore>(root));
  if (root.find("://") != std::string::npos)
    return Error{fmt::format("{}: a chunk store is an http:// or https:// URL or a directory", root)};
  if (!std::filesystem::is_directory(root + "/chunks"))
    return Error{fmt::format("{}: no chunks/ folder here (the served directory of troy publish)", root)};
  return directory_chunk_store(root);
}

}  // namespace troy::cli
