#include "night.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <ctime>
#include <span>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "manifest.h"
#include "output.h"
#include "server.h"

namespace troy::cli {
namespace {

using Json = nlohmann::json;

constexpr size_t kMaxNightFileBytes = 1 << 20;
constexpr int64_t kMaxDurationSeconds = 7 * 86400;

std::string night_folder(const std::string& served) { return served + "/reports/night"; }
std::string plan_path(const std::string& served) { return night_folder(served) + "/plan.json"; }
std::string nights_folder(const std::string& served) { return served + "/reports/nights"; }

std::string errno_text(const std::string& path, std::string_view what) {
  return fmt::format("{}: {}: {}", path, what, std::strerror(errno));
}

// A small file's text; nullopt when it is missing, unreadable or too large.
std::optional<std::string> read_text(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return std::nullopt;
  struct stat st {};
  std::optional<std::string> text;
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && static_cast<uint64_t>(st.st_size) <= kMaxNightFileBytes) {
    std::string bytes(static_cast<size_t>(st.st_size), '\0');
    size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::read(fd, bytes.data() + done, bytes.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    bytes.resize(done);
    text = std::move(bytes);
  }
  ::close(fd);
  return text;
}

// Written whole or not at all (a temporary file renamed): a reader, or the
// next night after a kill -9, never sees half of it.
Result<void> write_text(const std::string& path, const std::string& text) {
  TROY_ASSIGN(out, OutputFile::create(path, true));
  TROY_TRY(out.write_at(0, std::as_bytes(std::span(text))));
  return out.commit();
}

// Creates `folder` owned like SERVED/reports (the web server's user writes
// the boot requests into reports/night while this command runs as root).
Result<void> make_folder_like_reports(const std::string& served, const std::string& folder) {
  if (::mkdir(folder.c_str(), 0750) != 0 && errno != EEXIST) return Error{errno_text(folder, "cannot create the folder")};
  struct stat reports {};
  if (::stat((served + "/reports").c_str(), &reports) == 0 && ::geteuid() == 0)
    if (::chown(folder.c_str(), reports.st_uid, reports.st_gid) != 0)
      return Error{errno_text(folder, "cannot give the folder to the owner of reports/")};
  return success();
}

std::optional<int64_t> parse_integer(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  int64_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

Json parse_json_file(const std::string& path) {
  const auto text = read_text(path);
  return text ? Json::parse(*text, nullptr, false) : Json();
}

std::string string_or_empty(const Json& object, const char* name) {
  if (!object.is_object()) return "";
  const auto field = object.find(name);
  return field != object.end() && field->is_string() ? field->get<std::string>() : "";
}

std::optional<int64_t> integer_field(const Json& object, const char* name) {
  if (!object.is_object()) return std::nullopt;
  const auto field = object.find(name);
  if (field == object.end() || !field->is_number_integer()) return std::nullopt;
  return field->get<int64_t>();
}

// Names of the regular entries of a folder (none when it is missing).
std::vector<std::string> folder_entries(const std::string& folder) {
  std::vector<std::string> names;
  DIR* dir = ::opendir(folder.c_str());
  if (!dir) return names;
  while (const dirent* entry = ::readdir(dir))
    if (entry->d_name[0] != '.') names.emplace_back(entry->d_name);
  ::closedir(dir);
  std::sort(names.begin(), names.end());
  return names;
}

bool has_sign_of_life(const NightMachine& machine) { return machine.booted || machine.result; }

std::string utc(int64_t seconds, const char* format) {
  const std::time_t time = seconds;
  std::tm tm {};
  ::gmtime_r(&time, &tm);
  char text[40];
  std::strftime(text, sizeof text, format, &tm);
  return text;
}

// One cell of the report: a report's message must not drive the terminal.
std::string cell(std::string_view text) {
  std::string out;
  for (const char c : text) out += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? ' ' : c;
  return out.empty() ? "-" : out;
}

}  // namespace

std::optional<int64_t> parse_duration(std::string_view text) {
  if (text.empty()) return std::nullopt;
  int64_t unit = 1;
  switch (text.back()) {
    case 's': unit = 1; text.remove_suffix(1); break;
    case 'm': unit = 60; text.remove_suffix(1); break;
    case 'h': unit = 3600; text.remove_suffix(1); break;
    default: break;
  }
  int64_t count = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), count);
  if (text.empty() || error != std::errc() || end != text.data() + text.size() || count < 0 ||
      count > kMaxDurationSeconds / unit)
    return std::nullopt;
  return count * unit;
}

WakeChoice choose_machines(std::vector<KnownMachine> known, const std::optional<std::string>& newest,
                           const NightSettings& settings) {
  std::sort(known.begin(), known.end(), [](const auto& a, const auto& b) { return a.machine < b.machine; });
  WakeChoice choice;
  for (auto& machine : known) {
    const bool current = newest && machine.holds == newest && !machine.reimage && !settings.wake_current;
    (current ? choice.current : choice.wake).push_back(std::move(machine));
  }
  return choice;
}

std::string_view verdict_name(Verdict verdict) {
  switch (verdict) {
    case Verdict::pending: return "pending";
    case Verdict::updated: return "updated";
    case Verdict::failed: return "failed";
    case Verdict::no_report: return "no report";
    case Verdict::did_not_wake: return "did not wake";
  }
  return "?";
}

std::vector<size_t> next_wave(const std::vector<NightMachine>& machines, const NightSettings& settings, int64_t now) {
  std::vector<size_t> wave;
  for (size_t at = 0; at < machines.size() && wave.size() < settings.wave_size; ++at)
    if (machines[at].wakes == 0) wave.push_back(at);
  for (size_t at = 0; at < machines.size() && wave.size() < settings.wave_size; ++at) {
    const NightMachine& machine = machines[at];
    if (machine.wakes > 0 && machine.wakes <= settings.retries && !has_sign_of_life(machine) &&
        now - machine.last_wake >= settings.retry_after)
      wave.push_back(at);
  }
  return wave;
}

Verdict night_verdict(const NightMachine& machine, const std::string& newest, const NightSettings& settings,
                      int64_t now, bool over) {
  if (machine.result) return *machine.result == "ok" && machine.version == newest ? Verdict::updated : Verdict::failed;
  if (machine.booted) return over ? Verdict::no_report : Verdict::pending;
  const bool retries_spent = machine.wakes > settings.retries && now - machine.last_wake >= settings.retry_after;
  return over || retries_spent ? Verdict::did_not_wake : Verdict::pending;
}

bool night_settled(const std::vector<NightMachine>& machines, const std::string& newest,
                   const NightSettings& settings, int64_t now) {
  return std::none_of(machines.begin(), machines.end(), [&](const NightMachine& machine) {
    return night_verdict(machine, newest, settings, now, false) == Verdict::pending;
  });
}

// ---- the plan ----

Result<void> lock_night(const std::string& served) {
  TROY_TRY(make_folder_like_reports(served, night_folder(served)));
  const std::string path = night_folder(served) + "/lock";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return Error{errno_text(path, "cannot open the night's lock")};
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    return Error{fmt::format("{}: another night is running", path)};
  }
  return success();  // the descriptor stays open: the lock ends with the process
}

Result<void> write_night_plan(const std::string& served, const NightPlan& plan) {
  TROY_TRY(make_folder_like_reports(served, night_folder(served)));
  Json document;
  document["started"] = plan.started;
  document["deadline"] = plan.deadline;
  document["machines"] = Json::array();
  for (const auto& machine : plan.machines) document["machines"].push_back(machine);
  return write_text(plan_path(served), document.dump() + "\n");
}

std::optional<NightPlan> current_night_plan(const std::string& served, int64_t now) {
  const Json document = parse_json_file(plan_path(served));
  const auto started = integer_field(document, "started");
  const auto deadline = integer_field(document, "deadline");
  if (!started || !deadline || now >= *deadline || now < *started) return std::nullopt;
  const auto machines = document.find("machines");
  if (machines == document.end() || !machines->is_array()) return std::nullopt;
  NightPlan plan{*started, *deadline, {}};
  for (const auto& machine : *machines)
    if (machine.is_string()) plan.machines.insert(machine.get<std::string>());
  return plan;
}

Result<void> remove_night_plan(const std::string& served) {
  const std::string path = plan_path(served);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return Error{errno_text(path, "cannot remove")};
  return success();
}

bool night_boot(const std::string& served, const std::string& machine, int64_t now) {
  const auto plan = current_night_plan(served, now);
  if (!plan || !plan->machines.contains(machine)) return false;
  // Only machines of the plan name a file: a stranger's requests write nothing.
  (void)write_text(night_folder(served) + "/" + machine, fmt::format("{}\n", now));
  return true;
}

std::string night_arguments(std::string_view arguments) {
  std::string result;
  while (!arguments.empty()) {
    const size_t start = arguments.find_first_not_of(' ');
    if (start == std::string_view::npos) break;
    arguments.remove_prefix(start);
    const size_t end = std::min(arguments.find(' '), arguments.size());
    const std::string_view word = arguments.substr(0, end);
    if (!word.starts_with("troy.then=")) result += fmt::format("{} ", word);
    arguments.remove_prefix(end);
  }
  return result + "troy.then=poweroff";
}

// ---- what the night saw ----

void observe_night(const std::string& served, int64_t started, std::vector<NightMachine>& machines) {
  for (NightMachine& machine : machines) {
    const std::string& name = machine.known.machine;
    if (const auto text = read_text(night_folder(served) + "/" + name))
      if (const auto when = parse_integer(*text); when && *when >= started) machine.booted = *when;
    const Json state = parse_json_file(fmt::format("{}/reports/{}.boot", served, name));
    const auto time = integer_field(state, "time");
    const std::string result = string_or_empty(state, "result");
    if (!time || *time < started || result.empty()) continue;
    // A progress report (it is at work) is a sign of life, not an outcome.
    if (result != "ok" && result != "error") {
      if (!machine.booted || *machine.booted < *time) machine.booted = *time;
      continue;
    }
    machine.result = result;
    machine.version = string_or_empty(state, "version");
    machine.message = string_or_empty(parse_json_file(fmt::format("{}/reports/{}.json", served, name)), "message");
  }
}

std::map<std::string, std::string> held_versions(const std::string& served) {
  std::map<std::string, std::string> held;
  for (const std::string& name : folder_entries(served + "/reports")) {
    if (!name.ends_with(".boot")) continue;
    const auto machine = normalize_mac(std::string_view(name).substr(0, name.size() - 5));
    if (!machine) continue;
    const Json state = parse_json_file(served + "/reports/" + name);
    const std::string version = string_or_empty(state, "version");
    // A machine at work (a progress report came last) may hold half a version.
    const bool at_work = string_or_empty(state, "result") == "progress";
    if (!at_work && !version.empty() && version != "incomplete") held[*machine] = version;
    else held[*machine];  // seen, holding no version
  }
  return held;
}

std::set<std::string> reimage_flags(const std::string& served) {
  std::set<std::string> flagged;
  for (const std::string& name : folder_entries(served + "/reimage"))
    if (const auto machine = normalize_mac(name)) flagged.insert(*machine);
  return flagged;
}

std::optional<std::string> served_newest_version(const std::string& served) {
  auto text = read_manifest_file(served + "/manifest");
  if (!text) return std::nullopt;
  auto manifest = parse_manifest(*text, served + "/manifest");
  if (!manifest || manifest->versions.empty()) return std::nullopt;
  return manifest->versions.back().name;
}

// ---- the magic packet ----

std::optional<std::array<uint8_t, 102>> magic_packet(std::string_view machine) {
  const auto normalized = normalize_mac(machine);
  if (!normalized) return std::nullopt;
  std::array<uint8_t, 6> mac{};
  for (size_t at = 0; at < 6; ++at)
    std::from_chars(normalized->data() + at * 3, normalized->data() + at * 3 + 2, mac[at], 16);
  std::array<uint8_t, 102> packet{};
  std::fill_n(packet.begin(), 6, 0xff);
  for (size_t copy = 0; copy < 16; ++copy) std::copy(mac.begin(), mac.end(), packet.begin() + 6 + copy * 6);
  return packet;
}

Result<void> send_magic_packet(std::string_view machine, const std::string& broadcast, uint16_t port, int copies) {
  const auto packet = magic_packet(machine);
  if (!packet) return Error{fmt::format("{}: not a MAC address", machine)};
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(port);
  if (::inet_pton(AF_INET, broadcast.c_str(), &to.sin_addr) != 1)
    return Error{fmt::format("{}: not an IPv4 broadcast address", broadcast)};
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Error{fmt::format("wake-on-LAN: cannot open a UDP socket: {}", std::strerror(errno))};
  const int on = 1;
  Result<void> sent = success();
  if (::setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &on, sizeof on) != 0)
    sent = Error{fmt::format("wake-on-LAN: cannot broadcast: {}", std::strerror(errno))};
  for (int copy = 0; sent && copy < copies; ++copy)
    if (::sendto(fd, packet->data(), packet->size(), 0, reinterpret_cast<const sockaddr*>(&to), sizeof to) < 0)
      sent = Error{fmt::format("wake-on-LAN to {} port {}: {}", broadcast, port, std::strerror(errno))};
  ::close(fd);
  return sent;
}

// ---- the report ----

std::string format_night_report(const NightOutcome& outcome) {
  std::map<Verdict, size_t> counts;
  for (const auto& machine : outcome.machines)
    ++counts[night_verdict(machine, outcome.newest, outcome.settings, outcome.ended, true)];
  std::string text = fmt::format("Troy night {} - {}, newest version {}\n", utc(outcome.started, "%Y-%m-%d %H:%M:%SZ"),
                                 utc(outcome.ended, "%Y-%m-%d %H:%M:%SZ"), outcome.newest);
  text += fmt::format("{} woken: {} updated, {} failed, {} did not wake, {} woke without a report; {} already at {} (not woken)\n",
                      outcome.machines.size(), counts[Verdict::updated], counts[Verdict::failed],
                      counts[Verdict::did_not_wake], counts[Verdict::no_report], outcome.current.size(), outcome.newest);
  const auto line = [](std::string_view machine, std::string_view seat, std::string_view verdict,
                       std::string_view version, std::string_view wakes, std::string_view detail) {
    return fmt::format("{:<17}  {:<10}  {:<12}  {:<12}  {:<5}  {}\n", machine, seat, verdict, version, wakes, detail);
  };
  text += line("MACHINE", "SEAT", "VERDICT", "DISK HOLDS", "WAKES", "DETAIL");
  for (const auto& machine : outcome.machines) {
    const Verdict verdict = night_verdict(machine, outcome.newest, outcome.settings, outcome.ended, true);
    std::string detail = machine.message;
    if (verdict == Verdict::did_not_wake) detail = "no boot request after its wake-ups";
    if (verdict == Verdict::no_report) detail = fmt::format("booted the payload at {}, never reported", utc(*machine.booted, "%H:%M:%SZ"));
    text += line(machine.known.machine, cell(machine.known.seat), verdict_name(verdict), cell(machine.version),
                 std::to_string(machine.wakes), cell(detail));
  }
  for (const auto& machine : outcome.current)
    text += line(machine.machine, cell(machine.seat), "current", cell(machine.holds.value_or("")), "0",
                 "held the newest version: not woken");
  return text;
}

Result<std::string> write_night_report(const std::string& served, const NightOutcome& outcome) {
  TROY_TRY(make_folder_like_reports(served, nights_folder(served)));
  const std::string path = fmt::format("{}/{}.txt", nights_folder(served), utc(outcome.started, "%Y-%m-%dT%H%M%SZ"));
  TROY_TRY(write_text(path, format_night_report(outcome)));
  return path;
}

Result<std::string> read_night_report(const std::string& served, const std::string& night) {
  std::string path;
  if (night.find('/') != std::string::npos) {
    path = night;
  } else if (!night.empty()) {
    path = fmt::format("{}/{}{}", nights_folder(served), night, night.ends_with(".txt") ? "" : ".txt");
  } else {
    const auto names = folder_entries(nights_folder(served));
    const auto newest = std::find_if(names.rbegin(), names.rend(), [](const auto& n) { return n.ends_with(".txt"); });
    if (newest == names.rend()) return Error{fmt::format("{}: no night has been reported yet", nights_folder(served))};
    path = nights_folder(served) + "/" + *newest;
  }
  const auto text = read_text(path);
  if (!text) return Error{fmt::format("{}: no such night report", path)};
  return *text;
}

}  // namespace troy::cli
