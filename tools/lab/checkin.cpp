#include "checkin.h"
#include "file_descriptor.h"

#include <curl/curl.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <ctime>
#include <span>
#include <tuple>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "chunk_index.h"
#include "digest.h"
#include "files.h"
#include "image.h"
#include "output.h"
#include "signature.h"
#include "source.h"
#include "stored_version.h"
#include "text.h"

namespace troy::cli {
namespace {

using OrderedJson = nlohmann::ordered_json;

constexpr size_t kBufferBytes = 1 << 20;
constexpr size_t kMaxEntryJsonBytes = 64 << 10;
constexpr size_t kMaxAnswerBytes = 4096;

bool is_lower_hex(std::string_view text, size_t size) {
  return text.size() == size && std::all_of(text.begin(), text.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

std::optional<uint64_t> parse_number(std::string_view text) {
  uint64_t value = 0;
  if (text.empty() || text.size() > 20 || !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

std::string lower(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

CgiResponse answer(std::string status, std::string_view line) {
  return CgiResponse{std::move(status), "text/plain", fmt::format("{}\n", line)};
}

std::string describe_bytes(uint64_t bytes) {
  if (bytes >= (uint64_t{1} << 30)) return fmt::format("{:.1f} GiB", static_cast<double>(bytes) / (1 << 30));
  if (bytes >= (uint64_t{1} << 20)) return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / (1 << 20));
  return fmt::format("{} bytes", bytes);
}

Result<void> fsync_folder(const std::string& folder) {
  FileDescriptor fd(::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0 || ::fsync(fd.get()) != 0) return Error{os_error(folder, "cannot flush the folder")};
  return success();
}

// The newest published version, from SERVED/manifest as troy publish wrote
// it (the server's own file; the admin's publish verifies its signature).
Result<Manifest> served_manifest(const std::string& served) {
  const std::string path = served + "/manifest";
  TROY_ASSIGN(text, read_manifest_file(path));
  TROY_ASSIGN(manifest, parse_manifest(text, path));
  if (manifest.versions.empty()) return Error{fmt::format("{}: no version published yet", path)};
  return manifest;
}

std::string image_extension(const Layer& layer) { return layer.info().format == "vhdx" ? ".avhdx" : ".vhd"; }

// ---- receiving the body ----

struct Received {
  uint64_t bytes = 0;
  std::string sha256;
};

// Copies exactly `size` bytes of `body_fd` into `out_fd` (fewer when the
// client hung up), hashing them.
Result<Received> receive_checked_body(int body_fd, int out_fd, uint64_t size, const std::string& path) {
  std::vector<std::byte> buffer(kBufferBytes);
  Sha256Hasher hasher;
  hasher.start();
  Received received;
  while (received.bytes < size) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(buffer.size(), size - received.bytes));
    const ssize_t got = ::read(body_fd, buffer.data(), want);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return Error{fmt::format("the body could not be read: {}", std::strerror(errno))};
    if (got == 0) break;
    const auto piece = std::span(buffer).first(static_cast<size_t>(got));
    hasher.update(piece);
    for (size_t done = 0; done < piece.size();) {
      const ssize_t put = ::write(out_fd, piece.data() + done, piece.size() - done);
      if (put < 0 && errno == EINTR) continue;
      if (put < 0) return Error{os_error(path, "cannot write")};
      done += static_cast<size_t>(put);
    }
    received.bytes += static_cast<uint64_t>(got);
  }
  received.sha256 = to_hex(hasher.finish());
  return received;
}

std::string entry_json(const CheckinHeader& header, const std::string& seat, const std::string& received,
                       const ManifestVersion& parent, const std::string& image) {
  OrderedJson entry;
  entry["machine"] = header.machine;
  entry["seat"] = seat;
  entry["received"] = received;
  entry["size"] = header.size;
  entry["sha256"] = header.sha256;
  entry["parent_version"] = parent.name;
  entry["parent_id"] = parent.image_id;
  entry["image"] = image;
  return entry.dump(2, ' ', false, OrderedJson::error_handler_t::replace) + "\n";
}

Result<void> write_text_file(const std::string& path, const std::string& text) {
  TROY_ASSIGN(out, OutputFile::create(path, true));
  TROY_TRY(out.write_at(0, std::as_bytes(std::span(text))));
  return out.commit();
}

std::string iso_time(std::chrono::system_clock::time_point time, const char* format) {
  const std::time_t seconds = std::chrono::system_clock::to_time_t(time);
  std::tm utc{};
  ::gmtime_r(&seconds, &utc);
  char text[32];
  std::strftime(text, sizeof text, format, &utc);
  return text;
}

// Everything after authentication, under the inbox's lock: the body
// streamed to a temporary name, checked, then made an entry.
Result<CgiResponse> store_upload(const CheckinServer& server, const CheckinHeader& header, const Manifest& manifest,
                                 const std::string& seat, int body_fd, std::chrono::system_clock::time_point now) {
  const std::string part = fmt::format("{}/.{}.part", server.inbox, header.machine);
  const auto discard = [&part](std::string status, std::string line) {
    ::unlink(part.c_str());
    return answer(std::move(status), line);
  };
  Received received;
  {
    FileDescriptor out(::open(part.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0640));
    if (out.get() < 0) return Error{os_error(part, "cannot create")};
    auto got = receive_checked_body(body_fd, out.get(), header.size, part);
    if (!got) {
      ::unlink(part.c_str());
      return got.error();
    }
    received = *got;
    if (received.bytes != header.size)
      return discard("400 Bad Request", fmt::format("the body holds {} bytes, not the {} the header gives (cut short?); "
                                                    "nothing kept", received.bytes, header.size));
    if (received.sha256 != header.sha256)
      return discard("400 Bad Request", fmt::format("the body's sha256 is {}, not {} as the signed header says "
                                                    "(changed on the way?); nothing kept", received.sha256, header.sha256));
    if (::fsync(out.get()) != 0) return Error{os_error(part, "cannot flush")};
  }
  Diagnostics diagnostics;
  OpenOptions options;
  options.diagnostics = &diagnostics;
  auto layer = open_layer(part, options);
  if (!layer) return discard("422 Unprocessable Content", fmt::format("not a VHD or VHDX image: {}; nothing kept",
                                                                      layer.error().message));
  if (auto child = check_child_of_newest(**layer, manifest, "the upload"); !child)
    return discard("422 Unprocessable Content", child.error().message + "; nothing kept");
  const std::string name = checkin_entry_name(header.machine, now);
  const std::string image = name + image_extension(**layer);
  layer->reset();
  struct stat st {};
  if (::lstat(fmt::format("{}/{}.json", server.inbox, name).c_str(), &st) == 0)
    return discard("409 Conflict", fmt::format("{}: an entry of that name exists (two check-ins in one second); "
                                               "nothing kept, try again", name));
  TROY_TRY(write_text_file(fmt::format("{}/{}.json", server.inbox, name),
                           entry_json(header, seat, iso_time(now, "%Y-%m-%dT%H:%M:%SZ"), manifest.versions.back(), image)));
  const std::string target = server.inbox + "/" + image;
  if (::rename(part.c_str(), target.c_str()) != 0) return Error{os_error(target, "cannot rename the upload to")};
  TROY_TRY(fsync_folder(server.inbox));
  return answer("200 OK", fmt::format("checked in as {} ({}, sha256 {}, a child of {}); the admin publishes it: "
                                      "troy lab checkin publish {} --name NAME",
                                      name, describe_bytes(header.size), header.sha256, manifest.versions.back().name,
                                      name));
}

// Under the inbox's lock no upload runs, so any .MACHINE.part left is one
// whose receiver was killed (lighttpd stops the CGI when the machine hangs
// up): removed, never made an entry.
void remove_stale_parts(const std::string& inbox) {
  DIR* directory = ::opendir(inbox.c_str());
  if (directory == nullptr) return;
  while (const dirent* item = ::readdir(directory)) {
    const std::string_view file = item->d_name;
    if (file.starts_with(".") && file.ends_with(".part")) ::unlink(fmt::format("{}/{}", inbox, file).c_str());
  }
  ::closedir(directory);
}

Result<CgiResponse> take_checkin(const CheckinServer& server, const CgiRequest& request, const std::string& header_text,
                                 int body_fd, std::chrono::system_clock::time_point now) {
  if (request.method != "POST") return answer("405 Method Not Allowed", "POST the child image");
  if (!request.content_length || request.content_length->empty())
    return answer("411 Length Required", "CONTENT_LENGTH: missing (the child is sent with its length)");
  const auto length = parse_number(*request.content_length);
  if (!length) return answer("400 Bad Request", "CONTENT_LENGTH: not a number");
  auto header = parse_checkin_header(header_text);
  if (!header) return answer("400 Bad Request", header.error().message);
  if (header->size != *length)
    return answer("400 Bad Request", fmt::format("{}: SIZE {} is not the CONTENT_LENGTH {}", kCheckinHeader,
                                                 header->size, *length));
  if (server.inbox.empty())
    return answer("503 Service Unavailable", "check-in is not set up on this server (no inbox: TROY_INBOX)");
  TROY_ASSIGN(hosts, read_hosts(server.hosts, true));
  if (auto teacher = may_check_in(hosts, header->machine); !teacher)
    return answer("403 Forbidden", teacher.error().message);
  TROY_ASSIGN(manifest, served_manifest(server.served));
  struct statvfs fs {};
  if (::statvfs(server.inbox.c_str(), &fs) != 0) return Error{os_error(server.inbox, "cannot read the free space of")};
  const uint64_t free_bytes = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
  if (auto refusal = checkin_size_refusal(header->size, manifest.disk_size, free_bytes))
    return answer(refusal->status, refusal->line);
  // Authenticated before a byte of the body is read: a stranger writes nothing.
  TROY_ASSIGN(refused, authenticate_signed_request(
                           server.served, header->machine,
                           checkin_signed_text(header->machine, header->counter, header->size, header->sha256),
                           header->hmac, header->counter));
  if (refused) return answer("403 Forbidden", "check-in " + *refused);
  // One upload at a time: the inbox's room is checked for one.
  const std::string lock_path = server.inbox + "/.receive.lock";
  FileDescriptor lock(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (lock.get() < 0) return Error{os_error(lock_path, "cannot open the lock")};
  if (::flock(lock.get(), LOCK_EX | LOCK_NB) != 0)
    return answer("409 Conflict", "another check-in is being received; try again when it is done");
  remove_stale_parts(server.inbox);
  return store_upload(server, *header, manifest, hosts.seat_of(header->machine), body_fd, now);
}

std::optional<InboxEntry> read_entry(const std::string& inbox, const std::string& name) {
  const std::string path = fmt::format("{}/{}.json", inbox, name);
  auto text = read_small_file(path, kMaxEntryJsonBytes, "a check-in entry");
  if (!text) return std::nullopt;
  const OrderedJson json = OrderedJson::parse(*text, nullptr, false);
  if (!json.is_object()) return std::nullopt;
  const auto string_of = [&json](const char* key) {
    const auto field = json.find(key);
    return field != json.end() && field->is_string() ? field->get<std::string>() : std::string();
  };
  InboxEntry entry{name, "", string_of("machine"), string_of("seat"), string_of("received"), 0,
                   string_of("sha256"), string_of("parent_version"), string_of("parent_id")};
  const std::string image = string_of("image");
  // The image's name is the entry's: a .json never points elsewhere.
  if (image != name + ".avhdx" && image != name + ".vhd") return std::nullopt;
  entry.image = inbox + "/" + image;
  const auto size = json.find("size");
  if (size == json.end() || !size->is_number_unsigned()) return std::nullopt;
  entry.size = size->get<uint64_t>();
  struct stat st {};
  if (::lstat(entry.image.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
  return entry;
}

// ---- the upload (curl) ----

struct UploadState {
  int fd = -1;
  uint64_t sent = 0;
  uint64_t size = 0;
  const Console* console = nullptr;
  std::string answer;
};

size_t read_upload(char* buffer, size_t size, size_t count, void* data) {
  auto* state = static_cast<UploadState*>(data);
  const size_t want = static_cast<size_t>(std::min<uint64_t>(size * count, state->size - state->sent));
  if (want == 0) return 0;
  ssize_t got = -1;
  do {
    got = ::pread(state->fd, buffer, want, static_cast<off_t>(state->sent));
  } while (got < 0 && errno == EINTR);
  if (got <= 0) return CURL_READFUNC_ABORT;  // the file shrank or cannot be read: never send less silently
  state->sent += static_cast<uint64_t>(got);
  return static_cast<size_t>(got);
}

size_t keep_answer(char* data, size_t size, size_t count, void* user) {
  auto* state = static_cast<UploadState*>(user);
  const size_t bytes = size * count;
  state->answer.append(data, std::min(bytes, kMaxAnswerBytes - std::min(kMaxAnswerBytes, state->answer.size())));
  return bytes;
}

std::string first_line(const std::string& text) {
  std::string line = text.substr(0, text.find('\n'));
  return printable(line);
}

}  // namespace

Result<void> may_check_in(const Hosts& hosts, const std::string& machine) {
  const HostEntry* entry = hosts.find(machine);
  const std::string file = hosts.path.empty() ? std::string(kDefaultHostsPath) : hosts.path;
  if (!entry)
    return Error{fmt::format("check-in refused: {} is not in the hosts file {}; only a machine tagged +{} there may "
                             "check in", machine, file, kTeacherTag)};
  if (!entry->has_tag(kTeacherTag))
    return Error{fmt::format("check-in refused: {} ({}) is not a teacher machine: {} line {} has no +{} tag", machine,
                             entry->seat, file, entry->line, kTeacherTag)};
  return success();
}

std::optional<CheckinRefusal> checkin_size_refusal(uint64_t size, uint64_t disk_size, uint64_t free_bytes) {
  if (size < kMinCheckinBytes)
    return CheckinRefusal{"400 Bad Request",
                          fmt::format("{} bytes is too small for a VHD or VHDX image; nothing kept", size)};
  const uint64_t limit = disk_size + kCheckinOverheadBytes;
  if (size > limit)
    return CheckinRefusal{"413 Payload Too Large",
                          fmt::format("{} bytes is more than a child of the lab's {}-byte disk can be ({} bytes); "
                                      "nothing kept",
                                      size, disk_size, limit)};
  if (free_bytes < kInboxReserveBytes || size > free_bytes - kInboxReserveBytes)
    return CheckinRefusal{"507 Insufficient Storage",
                          fmt::format("the inbox has {} free; {} bytes and {} to spare do not fit; nothing kept",
                                      describe_bytes(free_bytes), size, describe_bytes(kInboxReserveBytes))};
  return std::nullopt;
}

Result<void> check_child_of_newest(const Layer& child, const Manifest& manifest, const std::string& path) {
  if (manifest.versions.empty()) return Error{"the lab has no published version yet"};
  const ManifestVersion& newest = manifest.versions.back();
  const ParentLink* link = child.parent_link();
  if (link == nullptr)
    return Error{fmt::format("{}: not a differencing image: a check-in is the teacher's child of {}", path, newest.name)};
  const std::string parent_id = lower(child.format_id(link->expected_id));
  if (parent_id != lower(newest.image_id)) {
    std::string known;
    for (const ManifestVersion& version : manifest.versions)
      if (lower(version.image_id) == parent_id) known = version.name;
    return Error{fmt::format("{}: {}: its parent id {} is not the id of the newest published version {} ({}){}", path,
                             link->expected_id_field, parent_id, newest.name, newest.image_id,
                             known.empty() ? "" : fmt::format(": it is a child of {}, an older version", known))};
  }
  if (child.virtual_size() != manifest.disk_size)
    return Error{fmt::format("{}: virtual size {} bytes, the lab's disks are {} bytes", path, child.virtual_size(),
                             manifest.disk_size)};
  return success();
}

std::string checkin_signed_text(const std::string& machine, uint64_t counter, uint64_t size, const std::string& sha256) {
  return fmt::format("troy-checkin 1 {} {} {} {}", machine, counter, size, sha256);
}

Result<CheckinHeader> parse_checkin_header(std::string_view text) {
  const std::string usage = fmt::format("{}: not 'MACHINE COUNTER SIZE SHA256 HMAC'", kCheckinHeader);
  if (text.empty()) return Error{fmt::format("{}: missing (troy checkin sends it)", kCheckinHeader)};
  if (text.size() > 256) return Error{usage};
  std::vector<std::string_view> words;
  while (!text.empty()) {
    const size_t end = std::min(text.find(' '), text.size());
    words.push_back(text.substr(0, end));
    text.remove_prefix(std::min(end + 1, text.size()));
  }
  if (words.size() != 5) return Error{usage};
  CheckinHeader header;
  const auto machine = normalize_mac(words[0]);
  const auto counter = parse_number(words[1]);
  const auto size = parse_number(words[2]);
  if (!machine) return Error{fmt::format("{}: MACHINE: not a MAC address", kCheckinHeader)};
  if (!counter) return Error{fmt::format("{}: COUNTER: not a whole number", kCheckinHeader)};
  if (!size) return Error{fmt::format("{}: SIZE: not a whole number", kCheckinHeader)};
  if (!is_lower_hex(words[3], 64)) return Error{fmt::format("{}: SHA256: not 64 lower-case hex digits", kCheckinHeader)};
  if (!is_lower_hex(words[4], 64)) return Error{fmt::format("{}: HMAC: not 64 lower-case hex digits", kCheckinHeader)};
  return CheckinHeader{*machine, *counter, *size, std::string(words[3]), std::string(words[4])};
}

std::string format_checkin_header(const CheckinHeader& header) {
  return fmt::format("{} {} {} {} {}", header.machine, header.counter, header.size, header.sha256, header.hmac);
}

std::string checkin_entry_name(const std::string& machine, std::chrono::system_clock::time_point received) {
  return fmt::format("{}-{}", machine, iso_time(received, "%Y%m%dT%H%M%SZ"));
}

CgiResponse handle_checkin(const CheckinServer& server, const CgiRequest& request, const std::string& header,
                           int body_fd, std::chrono::system_clock::time_point now) {
  try {
    auto taken = take_checkin(server, request, header, body_fd, now);
    if (!taken) return answer("500 Internal Server Error", taken.error().message);
    return *taken;
  } catch (const std::exception& e) {
    return answer("500 Internal Server Error", fmt::format("the check-in could not be handled: {}", e.what()));
  }
}

Result<std::vector<InboxEntry>> list_inbox(const std::string& inbox) {
  DIR* directory = ::opendir(inbox.c_str());
  if (directory == nullptr) {
    if (errno == ENOENT) return std::vector<InboxEntry>();
    return Error{os_error(inbox, "cannot read the inbox")};
  }
  std::vector<InboxEntry> entries;
  while (const dirent* item = ::readdir(directory)) {
    const std::string_view file = item->d_name;
    if (file.starts_with(".") || !file.ends_with(".json")) continue;
    if (auto entry = read_entry(inbox, std::string(file.substr(0, file.size() - 5)))) entries.push_back(*entry);
  }
  ::closedir(directory);
  std::sort(entries.begin(), entries.end(), [](const InboxEntry& a, const InboxEntry& b) {
    return std::tie(a.received, a.name) < std::tie(b.received, b.name);
  });
  return entries;
}

Result<InboxEntry> find_inbox_entry(const std::string& inbox, const std::string& name) {
  if (name.empty() || name.find('/') != std::string::npos || name.starts_with("."))
    return Error{fmt::format("'{}': not an entry of the inbox (troy lab checkin list)", name)};
  auto entry = read_entry(inbox, name);
  if (!entry)
    return Error{fmt::format("{}/{}: no such check-in (troy lab checkin list shows the inbox)", inbox, name)};
  return *entry;
}

std::string format_inbox_table(const std::vector<InboxEntry>& entries) {
  if (entries.empty()) return "the inbox is empty: no check-in waits\n";
  std::string text = fmt::format("{:<37}  {:<10}  {:<20}  {:>10}  {}\n", "ENTRY", "SEAT", "RECEIVED (UTC)", "SIZE",
                                 "CHILD OF");
  for (const InboxEntry& entry : entries)
    text += fmt::format("{:<37}  {:<10}  {:<20}  {:>10}  {}\n", printable(entry.name),
                        printable(entry.seat.empty() ? "-" : entry.seat), printable(entry.received),
                        describe_bytes(entry.size), printable(entry.parent_version));
  return text;
}

Result<Chain> open_child_over_newest(const std::string& child, const Manifest& manifest, const std::string& served) {
  Diagnostics diagnostics;
  OpenOptions options;
  options.diagnostics = &diagnostics;
  TROY_ASSIGN(layer, open_layer(child, options));
  TROY_TRY(check_child_of_newest(*layer, manifest, child));
  const ManifestVersion& newest = manifest.versions.back();
  const auto& index_file = newest.content_index;
  if (index_file.path.empty())
    return Error{fmt::format("{}/manifest: {} has no content index (published before troy kept one): the server cannot "
                             "read the parent of a check-in; publish from the teacher's own chain (troy publish)",
                             served, newest.name)};
  const std::string index_path = served + "/" + index_file.path;
  if (!file_matches(index_path, index_file.size, index_file.sha256))
    return Error{fmt::format("{}: missing or not the content index of {} the manifest lists (size {}, sha256 {})",
                             index_path, newest.name, index_file.size, index_file.sha256)};
  TROY_ASSIGN(index, read_chunk_index(index_path));
  TROY_ASSIGN(parent, open_stored_version(index_path, std::move(index), served));
  std::vector<std::unique_ptr<Layer>> layers;
  layers.push_back(std::move(layer));
  layers.push_back(std::move(parent));
  return Chain(std::move(layers));
}

Result<std::string> file_sha256(const std::string& path) {
  FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return Error{os_error(path, "cannot open")};
  std::vector<std::byte> buffer(kBufferBytes);
  Sha256Hasher hasher;
  hasher.start();
  while (true) {
    const ssize_t got = ::read(fd.get(), buffer.data(), buffer.size());
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return Error{os_error(path, "cannot read")};
    if (got == 0) break;
    hasher.update(std::span(buffer).first(static_cast<size_t>(got)));
  }
  return to_hex(hasher.finish());
}

Result<std::string> upload_checkin(const CheckinUpload& upload, const Console& console) {
  static const bool initialized = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
  if (!initialized) return Error{"libcurl could not be initialized"};
  FileDescriptor fd(::open(upload.child.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return Error{os_error(upload.child, "cannot open")};
  CheckinHeader header{upload.machine, upload.counter, upload.size, upload.sha256, ""};
  header.hmac = hmac_sha256_hex(upload.key, checkin_signed_text(header.machine, header.counter, header.size, header.sha256));
  std::string server = upload.server;
  while (!server.empty() && server.back() == '/') server.pop_back();
  const std::string url = server + "/cgi-bin/checkin";
  const std::string header_line = fmt::format("{}: {}", kCheckinHeader, format_checkin_header(header));
  CURL* curl = curl_easy_init();
  if (!curl) return Error{"libcurl could not start"};
  curl_slist* headers = curl_slist_append(nullptr, header_line.c_str());
  headers = curl_slist_append(headers, "Content-Type: application/octet-stream");
  UploadState state{fd.get(), 0, upload.size, &console, ""};
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_POST, 1L);
  curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(upload.size));
  curl_easy_setopt(curl, CURLOPT_READFUNCTION, &read_upload);
  curl_easy_setopt(curl, CURLOPT_READDATA, &state);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &keep_answer);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &state);
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 15L);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1024L);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, 120L);  // the server checks the image after the last byte
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_USERAGENT, "troy-checkin");
  console.say("uploading {} ({}) to {}", upload.child, describe_bytes(upload.size), url);
  const CURLcode code = curl_easy_perform(curl);
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  // A refusal may come before the body is sent: the server's line says why.
  if (status != 0 && status != 200)
    return Error{fmt::format("{}: HTTP {}: {}", url, status, first_line(state.answer))};
  if (code != CURLE_OK) return Error{fmt::format("{}: {}", url, curl_easy_strerror(code))};
  return first_line(state.answer);
}

}  // namespace troy::cli
