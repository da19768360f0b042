#include "source.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <vector>

#include <fmt/format.h>

#include "digest.h"

namespace troy::cli {
namespace {

constexpr size_t kChunk = 1 << 20;

Error errno_error(const std::string& what) { return Error{fmt::format("{}: {}", what, std::strerror(errno))}; }

Result<void> write_all(int fd, const char* data, size_t length, const std::string& path) {
  while (length > 0) {
    const ssize_t written = ::write(fd, data, length);
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) return errno_error(path);
    data += written;
    length -= static_cast<size_t>(written);
  }
  return success();
}

// The served directory on a local file system.
class DirectorySource final : public LabSource {
 public:
  explicit DirectorySource(std::string directory) : directory_(std::move(directory)) {}
  const std::string& location() const override { return directory_; }

  Result<void> post_json(const std::string& relative, const std::string&) override {
    return Error{fmt::format("{} is a directory: there is no server to send {} to", directory_, relative)};
  }

 protected:
  Result<void> stream(const std::string& relative, const ChunkSink& sink) override {
    const std::string path = directory_ + "/" + relative;
    // A FIFO or a device on a stick would block or never end: files only.
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return errno_error(path);
    struct stat info {};
    if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
      ::close(fd);
      return Error{fmt::format("{}: not a regular file", path)};
    }
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    std::vector<char> buffer(kChunk);
    Result<void> result = success();
    while (true) {
      const ssize_t got = ::read(fd, buffer.data(), buffer.size());
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) {
        result = errno_error(path);
        break;
      }
      if (got == 0) break;
      if (auto taken = sink(buffer.data(), static_cast<size_t>(got)); !taken) {
        result = taken.error();
        break;
      }
    }
    ::close(fd);
    return result;
  }

 private:
  std::string directory_;
};

// The lab server over HTTP(S), by libcurl: redirects stay on HTTP(S), a
// server that stalls (under 1 KiB/s for 60 s) or does not answer within 15 s
// is an error, not a hang.
class HttpSource final : public LabSource {
 public:
  explicit HttpSource(std::string url) : url_(std::move(url)) {
    while (!url_.empty() && url_.back() == '/') url_.pop_back();
  }
  const std::string& location() const override { return url_; }

  Result<void> post_json(const std::string& relative, const std::string& body) override {
    Curl curl;
    if (!curl.handle) return Error{"libcurl could not start"};
    const std::string url = url_ + "/" + relative;
    curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
    set_common(curl.handle, url);
    curl_easy_setopt(curl.handle, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl.handle, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(curl.handle, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    curl_easy_setopt(curl.handle, CURLOPT_WRITEFUNCTION, &discard);
    // A report is small: a server that hangs must not hold up the update
    // (progress reports are sent from the middle of an apply or sync).
    curl_easy_setopt(curl.handle, CURLOPT_TIMEOUT, 20L);
    const CURLcode code = curl_easy_perform(curl.handle);
    curl_slist_free_all(headers);
    return outcome(curl.handle, code, url, std::nullopt);
  }

 protected:
  Result<void> stream(const std::string& relative, const ChunkSink& sink) override {
    Curl curl;
    if (!curl.handle) return Error{"libcurl could not start"};
    const std::string url = url_ + "/" + relative;
    Transfer transfer{&sink, std::nullopt};
    set_common(curl.handle, url);
    curl_easy_setopt(curl.handle, CURLOPT_WRITEFUNCTION, &receive);
    curl_easy_setopt(curl.handle, CURLOPT_WRITEDATA, &transfer);
    const CURLcode code = curl_easy_perform(curl.handle);
    return outcome(curl.handle, code, url, transfer.refused);
  }

 private:
  struct Curl {
    CURL* handle = curl_easy_init();
    ~Curl() {
      if (handle) curl_easy_cleanup(handle);
    }
  };
  struct Transfer {
    const ChunkSink* sink;
    std::optional<Error> refused;
  };

  static size_t receive(char* data, size_t size, size_t count, void* user) {
    auto* transfer = static_cast<Transfer*>(user);
    auto taken = (*transfer->sink)(data, size * count);
    if (taken) return size * count;
    transfer->refused = taken.error();
    return 0;  // libcurl stops with CURLE_WRITE_ERROR
  }
  static size_t discard(char*, size_t size, size_t count, void*) { return size * count; }

  static void set_common(CURL* handle, const std::string& url) {
    curl_easy_setopt(handle, CURLOPT_URL, url.c_str());
    curl_easy_setopt(handle, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(handle, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(handle, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(handle, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(handle, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(handle, CURLOPT_CONNECTTIMEOUT, 15L);
    curl_easy_setopt(handle, CURLOPT_LOW_SPEED_LIMIT, 1024L);
    curl_easy_setopt(handle, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(handle, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(handle, CURLOPT_USERAGENT, "troy-update");
  }

  static Result<void> outcome(CURL* handle, CURLcode code, const std::string& url, const std::optional<Error>& refused) {
    if (refused) return *refused;
    if (code == CURLE_OK) return success();
    long status = 0;
    curl_easy_getinfo(handle, CURLINFO_RESPONSE_CODE, &status);
    if (code == CURLE_HTTP_RETURNED_ERROR) return Error{fmt::format("{}: the server answered HTTP {}", url, status)};
    return Error{fmt::format("{}: {}", url, curl_easy_strerror(code))};
  }

  std::string url_;
};

bool is_http(const std::string& location) {
  return location.starts_with("http://") || location.starts_with("https://");
}

}  // namespace

Result<std::unique_ptr<LabSource>> LabSource::open(const std::string& location) {
  if (is_http(location)) {
    static const bool initialized = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
    if (!initialized) return Error{"libcurl could not be initialized"};
    return std::unique_ptr<LabSource>(std::make_unique<HttpSource>(location));
  }
  if (location.find("://") != std::string::npos)
    return Error{fmt::format("--server {}: only http://, https:// or a directory", location)};
  struct stat info {};
  if (::stat(location.c_str(), &info) != 0 || !S_ISDIR(info.st_mode))
    return Error{fmt::format("--server {}: neither an http:// URL nor a directory", location)};
  return std::unique_ptr<LabSource>(std::make_unique<DirectorySource>(location));
}

bool file_matches(const std::string& path, uint64_t size, const std::string& sha256) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  struct stat info {};
  bool matches = ::fstat(fd, &info) == 0 && S_ISREG(info.st_mode) && static_cast<uint64_t>(info.st_size) == size;
  if (matches) {
    Sha256Hasher hasher;
    hasher.start();
    std::vector<std::byte> buffer(kChunk);
    ssize_t got = 0;
    while ((got = ::read(fd, buffer.data(), buffer.size())) > 0)
      hasher.update(std::span(buffer.data(), static_cast<size_t>(got)));
    matches = got == 0 && to_hex(hasher.finish()) == sha256;
  }
  ::close(fd);
  return matches;
}

Result<std::string> LabSource::fetch_small(const std::string& relative, uint64_t max_bytes) {
  std::string bytes;
  TROY_TRY(stream(relative, [&](const char* data, size_t length) -> Result<void> {
    if (bytes.size() + length > max_bytes)
      return Error{fmt::format("{}/{}: larger than {} bytes", location(), relative, max_bytes)};
    bytes.append(data, length);
    return success();
  }));
  return bytes;
}

Result<void> LabSource::fetch_checked(const std::string& relative, uint64_t size, const std::string& sha256,
                                      const std::string& destination, const FetchProgress& progress) {
  if (file_matches(destination, size, sha256)) return success();
  const std::string partial = destination + ".part";
  const int fd = ::open(partial.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return errno_error(partial);
  const std::string name = location() + "/" + relative;
  Sha256Hasher hasher;
  hasher.start();
  uint64_t received = 0;
  auto streamed = stream(relative, [&](const char* data, size_t length) -> Result<void> {
    if (received + length > size)
      return Error{fmt::format("{}: more than the {} bytes the manifest gives (damaged or replaced on the server)",
                               name, size)};
    received += length;
    hasher.update(std::as_bytes(std::span(data, length)));
    TROY_TRY(write_all(fd, data, length, partial));
    if (progress) progress(received, size);
    return success();
  });
  const bool synced = ::fsync(fd) == 0;
  ::close(fd);
  auto fail_with = [&](Error error) -> Result<void> {
    ::unlink(partial.c_str());
    return error;
  };
  if (!streamed) return fail_with(streamed.error());
  if (!synced) return fail_with(errno_error(partial));
  if (received != size)
    return fail_with(Error{fmt::format("{}: {} bytes, the manifest says {} (damaged or replaced on the server)", name,
                                       received, size)});
  const std::string actual = to_hex(hasher.finish());
  if (actual != sha256)
    return fail_with(Error{fmt::format("{}: sha256 {} is not the manifest's {} (damaged or replaced on the server)",
                                       name, actual, sha256)});
  if (::rename(partial.c_str(), destination.c_str()) != 0) return fail_with(errno_error(destination));
  return success();
}

}  // namespace troy::cli
