#include "http_source.h"

#include <curl/curl.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstring>
#include <optional>
#include <thread>

#include <fmt/format.h>

namespace troy::cli {
namespace {

// What one Range request brought back, gathered by libcurl's callbacks.
struct Answer {
  CURL* handle = nullptr;
  uint64_t wanted = 0;
  std::string content_range;  // the value of the last response's Content-Range header
  std::vector<std::byte> body;
  std::optional<std::string> refused;  // why the transfer was stopped
};

size_t receive_header(char* data, size_t size, size_t count, void* user) {
  auto* answer = static_cast<Answer*>(user);
  const std::string_view line(data, size * count);
  if (line.starts_with("HTTP/")) answer->content_range.clear();  // a new response (after a redirect)
  constexpr std::string_view kName = "content-range:";
  if (line.size() > kName.size()) {
    std::string name(line.substr(0, kName.size()));
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    if (name == kName) {
      std::string_view value = line.substr(kName.size());
      while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
      while (!value.empty() && (value.back() == '\r' || value.back() == '\n' || value.back() == ' '))
        value.remove_suffix(1);
      answer->content_range = value;
    }
  }
  return size * count;
}

size_t receive_body(char* data, size_t size, size_t count, void* user) {
  auto* answer = static_cast<Answer*>(user);
  long status = 0;
  curl_easy_getinfo(answer->handle, CURLINFO_RESPONSE_CODE, &status);
  if (status == 200) {
    // The whole file is coming: stop before it fills the memory.
    answer->refused = "the server ignores Range requests (it answered HTTP 200 with the whole file); serve the "
                      "lab's files with one that honours them (lighttpd, nginx and Apache do)";
    return 0;
  }
  if (status != 206) return size * count;  // an error page: its status is reported, its text is not kept
  if (answer->body.size() + size * count > answer->wanted) {
    answer->refused = fmt::format("the server sent more than the {} bytes asked for", answer->wanted);
    return 0;
  }
  const auto* bytes = reinterpret_cast<const std::byte*>(data);
  answer->body.insert(answer->body.end(), bytes, bytes + size * count);
  return size * count;
}

bool transient_curl_error(CURLcode code) {
  switch (code) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_GOT_NOTHING:
    case CURLE_SSL_CONNECT_ERROR: return true;
    default: return false;
  }
}

bool transient_status(long status) { return status >= 500 || status == 408 || status == 429; }

std::optional<uint64_t> number(std::string_view text) {
  uint64_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || error != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// "bytes FIRST-LAST/TOTAL", as RFC 9110 writes a single range.
struct ContentRange {
  uint64_t first = 0, last = 0, total = 0;
};
std::optional<ContentRange> parse_content_range(std::string_view text) {
  if (!text.starts_with("bytes ")) return std::nullopt;
  text.remove_prefix(6);
  const size_t dash = text.find('-'), slash = text.find('/');
  if (dash == std::string_view::npos || slash == std::string_view::npos || slash < dash) return std::nullopt;
  const auto first = number(text.substr(0, dash)), last = number(text.substr(dash + 1, slash - dash - 1)),
             total = number(text.substr(slash + 1));
  if (!first || !last || !total) return std::nullopt;
  return ContentRange{*first, *last, *total};
}

void set_transfer(CURL* handle, const std::string& url, const HttpReadOptions& options) {
  curl_easy_setopt(handle, CURLOPT_URL, url.c_str());
  curl_easy_setopt(handle, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(handle, CURLOPT_MAXREDIRS, 5L);
  curl_easy_setopt(handle, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(handle, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(handle, CURLOPT_CONNECTTIMEOUT, options.connect_timeout_s);
  curl_easy_setopt(handle, CURLOPT_LOW_SPEED_LIMIT, 1024L);
  curl_easy_setopt(handle, CURLOPT_LOW_SPEED_TIME, options.stall_time_s);
  curl_easy_setopt(handle, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(handle, CURLOPT_USERAGENT, "troy-update");
  // Bytes as stored: a compressed answer would not be the range asked for.
  curl_easy_setopt(handle, CURLOPT_HTTP_CONTENT_DECODING, 0L);
  curl_easy_setopt(handle, CURLOPT_HEADERFUNCTION, &receive_header);
  curl_easy_setopt(handle, CURLOPT_WRITEFUNCTION, &receive_body);
}

}  // namespace

bool is_http_url(const std::string& location) {
  return location.starts_with("http://") || location.starts_with("https://");
}

Result<void> check_piece_table(const PieceTable& table) {
  uint64_t expected = 0;
  for (size_t i = 0; i < table.pieces.size(); i++) {
    const PieceHash& piece = table.pieces[i];
    if (piece.offset != expected || piece.length == 0 || piece.length > table.file_size - piece.offset)
      return Error{fmt::format("{}: piece {} (offset {}, {} bytes) does not follow the piece before it inside the "
                               "file's {} bytes",
                               table.name, i, piece.offset, piece.length, table.file_size)};
    expected += piece.length;
  }
  if (expected != table.file_size)
    return Error{fmt::format("{}: its pieces cover {} bytes of the file's {}", table.name, expected, table.file_size)};
  return success();
}

PieceTable piece_table(const ChunkIndex& index, const std::string& name) {
  PieceTable table{name, index.total_size, {}};
  table.pieces.reserve(index.piece_count());
  for (size_t i = 0; i < index.piece_count(); i++)
    table.pieces.push_back({index.piece_offset(i), index.piece_length(i), index.pieces[i], index.is_zero(i)});
  return table;
}

Result<ChunkIndex> load_chunk_index(const std::string& file_or_url) {
  if (!is_http_url(file_or_url)) return read_chunk_index(file_or_url);
  static const bool initialized = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
  CURL* handle = initialized ? curl_easy_init() : nullptr;
  if (handle == nullptr) return Error{"libcurl could not start"};
  struct Body {
    std::vector<std::byte> bytes;
    bool too_large = false;
  } body;
  set_transfer(handle, file_or_url, HttpReadOptions{});
  curl_easy_setopt(handle, CURLOPT_HEADERFUNCTION, nullptr);
  curl_easy_setopt(handle, CURLOPT_FAILONERROR, 1L);
  curl_easy_setopt(handle, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(handle, CURLOPT_WRITEFUNCTION, +[](char* data, size_t size, size_t count, void* user) -> size_t {
    auto* into = static_cast<Body*>(user);
    if (into->bytes.size() + size * count > kMaxChunkIndexBytes) {
      into->too_large = true;
      return 0;
    }
    const auto* bytes = reinterpret_cast<const std::byte*>(data);
    into->bytes.insert(into->bytes.end(), bytes, bytes + size * count);
    return size * count;
  });
  const CURLcode code = curl_easy_perform(handle);
  long status = 0;
  curl_easy_getinfo(handle, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_cleanup(handle);
  if (body.too_large) return Error{fmt::format("{}: larger than {} bytes: not a chunk index", file_or_url, kMaxChunkIndexBytes)};
  if (code == CURLE_HTTP_RETURNED_ERROR) return Error{fmt::format("{}: the server answered HTTP {}", file_or_url, status)};
  if (code != CURLE_OK) return Error{fmt::format("{}: {}", file_or_url, curl_easy_strerror(code))};
  return parse_chunk_index(body.bytes, file_or_url);
}

Result<std::unique_ptr<HttpRangeSource>> HttpRangeSource::open(const std::string& url, PieceTable table,
                                                               const HttpReadOptions& options) {
  if (!is_http_url(url)) return Error{fmt::format("{}: not an http:// or https:// URL", url)};
  TROY_TRY(check_piece_table(table));
  static const bool initialized = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
  if (!initialized) return Error{"libcurl could not be initialized"};
  auto source = std::unique_ptr<HttpRangeSource>(new HttpRangeSource(url, std::move(table), options));
  if (source->curl_ == nullptr) return Error{"libcurl could not start"};
  return source;
}

Result<std::unique_ptr<HttpRangeSource>> open_remote_image(const std::string& url, PieceTable table,
                                                           const HttpReadOptions& options) {
  TROY_ASSIGN(source, HttpRangeSource::open(url, std::move(table), options));
  if (source->size() > 0) {
    std::byte first{};
    TROY_TRY(source->read_at(0, std::span(&first, 1)));
  }
  return source;
}

HttpRangeSource::HttpRangeSource(std::string url, PieceTable table, const HttpReadOptions& options)
    : url_(std::move(url)), table_(std::move(table)), options_(options), curl_(curl_easy_init()) {}

HttpRangeSource::~HttpRangeSource() {
  if (curl_) curl_easy_cleanup(static_cast<CURL*>(curl_));
}

HttpReadStats HttpRangeSource::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

size_t HttpRangeSource::piece_at(uint64_t offset) const {
  const auto after = std::upper_bound(table_.pieces.begin(), table_.pieces.end(), offset,
                                      [](uint64_t at, const PieceHash& piece) { return at < piece.offset; });
  return static_cast<size_t>(after - table_.pieces.begin()) - 1;
}

const std::vector<std::byte>* HttpRangeSource::cached(size_t piece) const {
  const auto found = cache_index_.find(piece);
  if (found == cache_index_.end()) return nullptr;
  cache_.splice(cache_.begin(), cache_, found->second);
  return &found->second->bytes;
}

void HttpRangeSource::remember(size_t piece, std::vector<std::byte> bytes) const {
  if (cache_index_.contains(piece)) return;
  cache_size_ += bytes.size();
  cache_.push_front({piece, std::move(bytes)});
  cache_index_[piece] = cache_.begin();
  while (cache_size_ > options_.cache_bytes && cache_.size() > 1) {
    cache_size_ -= cache_.back().bytes.size();
    cache_index_.erase(cache_.back().piece);
    cache_.pop_back();
  }
}

Result<void> HttpRangeSource::read_at(uint64_t offset, std::span<std::byte> out) const {
  if (out.empty()) return success();
  if (offset > size() || out.size() > size() - offset)
    return Error{fmt::format("{}: read of {} bytes at offset {} past its end ({} bytes)", url_, out.size(), offset,
                             size())};
  std::lock_guard lock(mutex_);
  const uint64_t end = offset + out.size();
  // Copies the part of piece `index` (its bytes `bytes`) that the read covers.
  auto copy_out = [&](size_t index, std::span<const std::byte> bytes) {
    const PieceHash& piece = table_.pieces[index];
    const uint64_t from = std::max(offset, piece.offset), to = std::min(end, piece.offset + piece.length);
    std::memcpy(out.data() + (from - offset), bytes.data() + (from - piece.offset), to - from);
  };
  const size_t last = piece_at(end - 1);
  for (size_t index = piece_at(offset); index <= last;) {
    if (table_.pieces[index].zero) {
      const PieceHash& piece = table_.pieces[index];
      const uint64_t from = std::max(offset, piece.offset), to = std::min(end, piece.offset + piece.length);
      std::memset(out.data() + (from - offset), 0, to - from);
      index++;
      continue;
    }
    if (const auto* bytes = cached(index)) {
      copy_out(index, *bytes);
      index++;
      continue;
    }
    // The pieces not cached from here on, fetched in one request.
    size_t run_end = index + 1;
    uint64_t run_bytes = table_.pieces[index].length;
    while (run_end <= last && !cache_index_.contains(run_end) && !table_.pieces[run_end].zero &&
           run_bytes + table_.pieces[run_end].length <= options_.max_request_bytes)
      run_bytes += table_.pieces[run_end++].length;
    TROY_ASSIGN(bytes, fetch_verified(index, run_end - 1));
    for (size_t piece = index; piece < run_end; piece++) {
      const auto begin = bytes.begin() + static_cast<ptrdiff_t>(table_.pieces[piece].offset - table_.pieces[index].offset);
      std::vector<std::byte> own(begin, begin + static_cast<ptrdiff_t>(table_.pieces[piece].length));
      copy_out(piece, own);
      remember(piece, std::move(own));
    }
    index = run_end;
  }
  return success();
}

// Pieces first..last, each checked against its hash before any is returned.
Result<std::vector<std::byte>> HttpRangeSource::fetch_verified(size_t first, size_t last) const {
  const uint64_t start = table_.pieces[first].offset;
  const uint64_t length = table_.pieces[last].offset + table_.pieces[last].length - start;
  TROY_ASSIGN(bytes, fetch_with_retries(start, length));
  Sha256Hasher hasher;
  for (size_t index = first; index <= last; index++) {
    const PieceHash& piece = table_.pieces[index];
    const auto actual = hasher(std::span(bytes).subspan(piece.offset - start, piece.length));
    if (actual != piece.sha256)
      return Error{fmt::format("{}: piece {} (bytes {}-{}) has sha256 {}, not the {} that {} gives: damaged or "
                               "replaced on the server; none of it was written",
                               url_, index, piece.offset, piece.offset + piece.length - 1, to_hex(actual),
                               to_hex(piece.sha256), table_.name)};
  }
  return bytes;
}

Result<std::vector<std::byte>> HttpRangeSource::fetch_with_retries(uint64_t offset, uint64_t length) const {
  CURL* handle = static_cast<CURL*>(curl_);
  const std::string range = fmt::format("{}-{}", offset, offset + length - 1);
  const std::string where = fmt::format("{}: bytes {}", url_, range);
  unsigned pause_ms = options_.first_pause_ms;
  for (int attempt = 1;; attempt++) {
    Answer answer{handle, length, {}, {}, {}};
    answer.body.reserve(length);
    set_transfer(handle, url_, options_);
    curl_easy_setopt(handle, CURLOPT_RANGE, range.c_str());
    curl_easy_setopt(handle, CURLOPT_HEADERDATA, &answer);
    curl_easy_setopt(handle, CURLOPT_WRITEDATA, &answer);
    const CURLcode code = curl_easy_perform(handle);
    long status = 0;
    curl_easy_getinfo(handle, CURLINFO_RESPONSE_CODE, &status);
    stats_.requests++;
    stats_.bytes_fetched += answer.body.size();
    if (answer.refused) return Error{fmt::format("{}: {}", where, *answer.refused)};
    std::string problem;
    bool transient = false;
    if (code != CURLE_OK) {
      problem = curl_easy_strerror(code);
      transient = transient_curl_error(code);
    } else if (status != 206) {
      problem = fmt::format("the server answered HTTP {}", status);
      transient = transient_status(status);
    }
    if (problem.empty()) {
      const auto answered = parse_content_range(answer.content_range);
      if (!answered || answered->first != offset || answered->last != offset + length - 1)
        return Error{fmt::format("{}: the server answered another range ('{}')", where, answer.content_range)};
      if (answered->total != size())
        return Error{fmt::format("{}: the file on the server is {} bytes, {} says {} (damaged or replaced on the server)", where,
                                 answered->total, table_.name, size())};
      if (answer.body.size() != length)
        return Error{fmt::format("{}: the server sent {} bytes of the {} asked for", where, answer.body.size(), length)};
      return std::move(answer.body);
    }
    if (!transient || attempt >= options_.attempts)
      return Error{fmt::format("{}: {}{}", where, problem,
                               attempt > 1 ? fmt::format(" (after {} attempts)", attempt) : "")};
    stats_.retries++;
    std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms));
    pause_ms = std::min(pause_ms * 2, 8000u);
  }
}

}  // namespace troy::cli
