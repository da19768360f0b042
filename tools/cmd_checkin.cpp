// Teacher check-in (lab/checkin.h, docs/checkin.md):
//   troy checkin CHILD --server URL --key LAB.PUB --machine MAC --state DEVICE [--partition DEV]
//     the teacher machine's side: its child uploaded, signed with its report key;
//   troy lab checkin receive   the CGI program for POST /cgi-bin/checkin (www-data);
//   troy lab checkin list      the inbox;
//   troy lab checkin publish ENTRY|FILE --name NAME --key LAB.KEY
//     root's side: re-checked, then published by the same code as troy publish.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>

#include <fmt/format.h>

#include "checkin.h"
#include "command_report.h"
#include "common.h"
#include "disks.h"
#include "lab_config.h"
#include "files.h"
#include "machine_state.h"
#include "manifest.h"
#include "signature.h"
#include "source.h"
#include "update.h"
#include "vhdboot.h"

namespace troy::cli {

// cmd_publish.cpp: the same code as troy publish.
Result<std::string> publish_checked_in(const std::string& served, const std::string& key, const std::string& name,
                                       const std::string& image,
                                       const std::function<Result<Chain>(const Manifest&)>& open_image,
                                       const Console& console, Json& json);

namespace {

constexpr uint64_t kMaxManifestBytes = 16 << 20;

// ---- the machine's side ----

struct CheckinOptions {
  std::string child;         // CHILD; in the payload, the manifest's layout vhdboot CHILD
  std::string server;
  std::string cmdline;       // the payload: troy.server= from /proc/cmdline, the rest from the manifest
  std::string public_key;
  std::string machine;
  std::string state_device;  // --state: the lab disk, its state after the image
  std::string partition;
  std::string mount_dir = "/run/troy/ntfs";
  std::string sysfs = "/sys";
  std::string dev = "/dev";
  ReportOptions report;
};

// The lab's manifest from the server, trusted only once its signature verifies.
Result<Manifest> verified_manifest(const std::string& server, const std::string& public_key) {
  TROY_ASSIGN(key, load_ed25519_key(public_key, true));
  TROY_ASSIGN(source, LabSource::open(server));
  TROY_ASSIGN(text, source->fetch_small("manifest", kMaxManifestBytes));
  TROY_ASSIGN(signature, source->fetch_small("manifest.sig", kMaxManifestBytes));
  TROY_TRY(verify(key, std::as_bytes(std::span(text)), signature, server + "/manifest.sig"));
  return parse_manifest(text, server + "/manifest");
}

// Where the machine's state (machine_state.h: its report key and counter)
// is kept: after the image on the lab disk, or, on a native-VHD-boot
// machine, in the state file beside BASE (vhdboot.h).
struct StatePlace {
  std::string path;
  uint64_t offset = 0;
};

// The report key and the next counter, saved before it is sent (as troy
// update does for a report): a counter is never used twice.
Result<MachineState> next_counter(const StatePlace& place) {
  TROY_ASSIGN(state, read_machine_state(place.path, place.offset));
  if (!state)
    return Error{fmt::format("{}: no machine state (byte {}): this machine has no report key yet; boot it into the "
                             "payload once so that its report enrolls one",
                             place.path, place.offset)};
  state->report_counter++;
  TROY_TRY(write_machine_state(place.path, place.offset, *state));
  return *state;
}

Result<std::string> check_in_file(const CheckinOptions& options, const Manifest& manifest, const std::string& child,
                                  const StatePlace& place, const Console& console, Json& json) {
  {
    // Before hashing and sending gigabytes: is it a child of the newest version?
    Diagnostics diagnostics;
    OpenOptions open;
    open.diagnostics = &diagnostics;
    TROY_ASSIGN(layer, open_layer(child, open));
    TROY_TRY(check_child_of_newest(*layer, manifest, child));
  }
  struct stat st {};
  if (::stat(child.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return Error{fmt::format("{}: not a regular file", child)};
  console.say("{} is a child of {}, the newest version; hashing it", child, manifest.versions.back().name);
  TROY_ASSIGN(sha256, file_sha256(child));
  TROY_ASSIGN(state, next_counter(place));
  CheckinUpload upload{options.server, child, *normalize_mac(options.machine),
                       std::vector<uint8_t>(state.key.begin(), state.key.end()), state.report_counter, sha256,
                       static_cast<uint64_t>(st.st_size)};
  json["sha256"] = sha256;
  json["bytes"] = upload.size;
  json["parent_version"] = manifest.versions.back().name;
  return upload_checkin(upload, console);
}

unsigned wait_seconds(const std::string& cmdline) {
  auto text = read_small_file(cmdline, 64 << 10, "a kernel command line");
  return text ? kernel_settings(*text).wait.value_or(60) : 60;
}

// The payload (--cmdline): the lab disk by the manifest's disk rules, the
// NTFS partition by its layout vhdboot rule, as troy update finds them.
Result<std::string> payload_partition(const CheckinOptions& options, const Manifest& manifest, const Console& console) {
  const VhdBootLayout& layout = *manifest.vhdboot;
  TROY_ASSIGN(disks, list_disks(options.sysfs + "/block"));
  TROY_ASSIGN(disk, choose_disk(disks, manifest.disk_rules, std::nullopt));
  TROY_ASSIGN(rule, parse_partition_rule(layout.partition_rule));
  TROY_ASSIGN(partitions, list_partitions(options.sysfs + "/block", options.dev, disk.name, !rule.label.empty(),
                                          read_ntfs_label));
  TROY_ASSIGN(partition, choose_partition(partitions, rule, options.dev + "/" + disk.name));
  const std::string device = options.dev + "/" + partition.name;
  console.say("partition: {} matches {}; mounting it with ntfs-3g", device, layout.partition_rule);
  return device;
}

Result<std::string> check_in(CheckinOptions options, const Console& console, Json& json) {
  if (!normalize_mac(options.machine))
    return Error{fmt::format("--machine '{}': not a MAC address (52:54:00:ab:cd:ef)", options.machine)};
  if (!options.cmdline.empty()) {
    TROY_ASSIGN(text, read_small_file(options.cmdline, 64 << 10, "a kernel command line"));
    options.server = kernel_settings(text).server;
    if (options.server.empty())
      return Error{fmt::format("{}: no troy.server=URL (the lab's boot script sets it)", options.cmdline)};
  }
  if (options.server.empty()) return Error{"--server URL (or --cmdline FILE with troy.server=) is required"};
  TROY_ASSIGN(manifest, verified_manifest(options.server, options.public_key));
  if (!options.cmdline.empty()) {
    if (!manifest.vhdboot)
      return Error{fmt::format("{}/manifest: no layout vhdboot line: the payload checks in a native-VHD-boot "
                               "teacher's child; check in by hand (troy checkin CHILD --state DEVICE) or from a "
                               "share (docs/checkin.md)",
                               options.server)};
    TROY_ASSIGN(partition, payload_partition(options, manifest, console));
    options.partition = partition;
    if (options.child.empty()) options.child = manifest.vhdboot->child;
  }
  if (options.child.empty()) return Error{"CHILD is required (or --cmdline FILE in the payload)"};
  if (options.partition.empty()) {
    if (options.state_device.empty()) return Error{"--state DEVICE is required: the lab disk holding the machine's key"};
    return check_in_file(options, manifest, options.child, {options.state_device, manifest.disk_size}, console, json);
  }
  TROY_TRY(check_partition_path(options.child, "CHILD"));
  TROY_TRY(mount_ntfs(options.partition, options.mount_dir));
  // A native-VHD-boot machine keeps its state beside BASE, on this partition.
  const StatePlace place = options.state_device.empty() && manifest.vhdboot
                               ? StatePlace{state_file_path(options.mount_dir + "/" + manifest.vhdboot->base), 0}
                               : StatePlace{options.state_device, manifest.disk_size};
  auto answer = place.path.empty() ? Result<std::string>(Error{"--state DEVICE is required: the lab disk holding "
                                                               "the machine's key"})
                                   : check_in_file(options, manifest, options.mount_dir + "/" + options.child, place,
                                                   console, json);
  auto unmounted = unmount_ntfs(options.mount_dir);
  if (!answer) return answer;
  if (!unmounted) return unmounted.error();
  return answer;
}

// ---- the server's side ----

struct LabCheckinOptions {
  std::string served;  // --served, else TROY_SERVED, else lab.conf's
  std::string config;
  std::string inbox = kDefaultInbox;  // --inbox, else TROY_INBOX
  std::string hosts;   // --hosts, else TROY_HOSTS, else /etc/troy/hosts
  std::string entry;   // ENTRY or FILE
  std::string name;
  std::string key;
  ReportOptions report;
};

std::string environment(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}

int run_receive(const LabCheckinOptions& options) {
  // lighttpd sends SIGTERM to the CGI when the machine hangs up mid-upload;
  // ignored, the body read ends short instead and the temporary file is
  // removed (a kill -9 leaves it to the next check-in's clean-up).
  std::signal(SIGTERM, SIG_IGN);
  CheckinServer server{options.served, options.inbox, options.hosts.empty() ? kDefaultHostsPath : options.hosts};
  CgiResponse response;
  if (server.served.empty()) {
    response = CgiResponse{"500 Internal Server Error", "text/plain",
                           "the served directory is not set (--served DIR or TROY_SERVED)\n"};
  } else {
    CgiRequest request;
    request.method = environment("REQUEST_METHOD");
    if (const char* length = std::getenv("CONTENT_LENGTH")) request.content_length = length;
    request.remote_address = environment("REMOTE_ADDR");
    response = handle_checkin(server, request, environment("HTTP_X_TROY_CHECKIN"), STDIN_FILENO,
                              std::chrono::system_clock::now());
  }
  const std::string output = cgi_output(response);
  std::fwrite(output.data(), 1, output.size(), stdout);
  std::fflush(stdout);
  // lighttpd's error log (the journal) keeps who was refused and why.
  if (response.status != "200 OK")
    std::fprintf(stderr, "troy lab checkin receive: %s from %s: %s", response.status.c_str(),
                 environment("REMOTE_ADDR").c_str(), response.body.c_str());
  return response.status.starts_with("5") ? kExitError : kExitOk;
}

int run_list(const LabCheckinOptions& options) {
  auto entries = list_inbox(options.inbox);
  if (!entries) return fail(entries.error());
  const std::string text = format_inbox_table(*entries);
  std::fwrite(text.data(), 1, text.size(), stdout);
  return kExitOk;
}

// An inbox entry (its sha256 checked again: the file is the one received),
// or with a '/' a file on a share.
Result<std::string> checked_image(const LabCheckinOptions& options, const Console& console, Json& json) {
  if (options.entry.find('/') != std::string::npos) {
    if (!std::filesystem::is_regular_file(options.entry))
      return Error{fmt::format("{}: not a file", options.entry)};
    json["from"] = "file";
    return options.entry;
  }
  TROY_ASSIGN(entry, find_inbox_entry(options.inbox, options.entry));
  console.say("checking {} against the sha256 it arrived with", entry.image);
  TROY_ASSIGN(sha, file_sha256(entry.image));
  if (sha != entry.sha256)
    return Error{fmt::format("{}: its sha256 is {}, not {} as received: changed since; nothing published", entry.image,
                             sha, entry.sha256)};
  json["from"] = "inbox";
  json["machine"] = entry.machine;
  return entry.image;
}

// Once published, the inbox entry moves to INBOX/published/ (kept: the
// admin removes it; a second publish of it is refused as no entry).
Result<void> file_away(const LabCheckinOptions& options) {
  if (options.entry.find('/') != std::string::npos) return success();
  TROY_ASSIGN(entry, find_inbox_entry(options.inbox, options.entry));
  const std::string done = options.inbox + "/published";
  std::error_code error;
  std::filesystem::create_directories(done, error);
  const std::string image = std::filesystem::path(entry.image).filename().string();
  for (const std::string& file : {image, options.entry + ".json"}) {
    std::filesystem::rename(options.inbox + "/" + file, done + "/" + file, error);
    if (error) return Error{fmt::format("{}/{}: cannot move it to {}: {}", options.inbox, file, done, error.message())};
  }
  return success();
}

// A publish cut short (kill, power loss) is finished by the next run: when
// the manifest lists NAME with this image's bytes, it was published (only
// filing the entry away was left); when it does not list NAME, the files a
// cut publish left for NAME (the delta, its fingerprint and file index,
// which publish refuses to replace) are removed, then it publishes anew.
Result<std::optional<std::string>> finish_cut_publish(const std::string& served, const std::string& name,
                                                      const std::string& image, const Console& console) {
  TROY_ASSIGN(lock, ServedLock::take(served));
  auto text = read_manifest_file(served + "/manifest");
  if (!text) return std::optional<std::string>();
  TROY_ASSIGN(manifest, parse_manifest(*text, served + "/manifest"));
  for (const ManifestVersion& version : manifest.versions) {
    if (version.name != name) continue;
    TROY_ASSIGN(sha, file_sha256(image));
    if (version.sha256 != sha) return std::optional<std::string>();  // another image: publish refuses the name
    return std::optional<std::string>(fmt::format("{} was published already (by a run cut short before it filed "
                                                  "the entry away)", name));
  }
  std::string extension = std::filesystem::path(image).extension().string();  // as troy publish names the copy
  for (char& c : extension) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (extension.empty()) extension = ".vhd";
  for (const std::string& left : {"versions/" + name + extension, "versions/" + name + ".fingerprint",
                                  "versions/" + name + extension + ".index"}) {
    std::error_code error;
    if (std::filesystem::remove(served + "/" + left, error))
      console.say("{}/{}: left by a publish cut short, removed", served, left);
  }
  return std::optional<std::string>();
}

Result<std::string> publish_entry(const LabCheckinOptions& options, const Console& console, Json& json) {
  TROY_ASSIGN(served, served_directory(options.served, options.config));
  TROY_ASSIGN(image, checked_image(options, console, json));
  if (!valid_version_name(options.name))
    return Error{fmt::format("--name '{}': 1 to 64 of A-Z a-z 0-9 . _ -, not starting with a dot", options.name)};
  TROY_ASSIGN(done, finish_cut_publish(served, options.name, image, console));
  if (done) {
    TROY_TRY(file_away(options));
    return *done;
  }
  const auto open_image = [&image, &served](const Manifest& manifest) {
    return open_child_over_newest(image, manifest, served);
  };
  TROY_ASSIGN(what, publish_checked_in(served, options.key, options.name, image, open_image, console, json));
  if (auto filed = file_away(options); !filed)
    console.warn("{} (published all the same)", filed.error().message);
  return what;
}

void add_inbox_option(CLI::App& command, LabCheckinOptions& options) {
  command.add_option("--inbox", options.inbox, fmt::format("The check-in inbox (default: $TROY_INBOX, else {})", kDefaultInbox))
      ->envname("TROY_INBOX");
}

}  // namespace

void add_lab_config_option(CLI::App& command, std::string& path);  // --config FILE (cmd_lab_config.cpp)

void register_checkin(CLI::App& app, int& exit_code, const Console& console) {
  auto options = std::make_shared<CheckinOptions>();
  CLI::App* command = app.add_subcommand(
      "checkin",
      "A teacher machine's changes to the lab server: its differencing CHILD (a child of the newest published "
      "version) uploaded to /cgi-bin/checkin, signed with the machine's report key; the admin publishes it");
  command->add_option("CHILD", options->child,
                      "The child image (with --partition: its path on that partition; with --cmdline: the "
                      "manifest's layout vhdboot CHILD)");
  command->add_option("--server", options->server, "The lab server, http://HOST:PORT");
  command->add_option("--cmdline", options->cmdline,
                      "The boot payload: troy.server= from this file (/proc/cmdline); the disk, the NTFS partition, "
                      "CHILD and the state file from the manifest's disk rules and layout vhdboot line");
  command->add_option("--key", options->public_key, "The lab's public key (verifies the manifest)")->required();
  command->add_option("--machine", options->machine, "This machine's MAC address (the server's name for it)")
      ->required();
  command->add_option("--state", options->state_device,
                      "The lab disk holding the machine's state (its report key) after the image (a native-VHD-boot "
                      "lab's machine keeps it in a file beside BASE instead: found on --partition)");
  command->add_option("--partition", options->partition, "Mount this NTFS partition (ntfs-3g) and read CHILD on it");
  command->add_option("--mount-dir", options->mount_dir, "Where to mount it")->capture_default_str();
  command->add_option("--sysfs", options->sysfs, "With --cmdline: where sysfs is (tests)")->capture_default_str();
  command->add_option("--dev", options->dev, "With --cmdline: where the device nodes are (tests)")->capture_default_str();
  add_report_options(*command, options->report);
  command->callback([options, &exit_code, &console] {
    CommandReport report("checkin", options->report, console);
    report.json()["child"] = options->child;
    report.json()["server"] = options->server;
    auto answer = check_in(*options, console, report.json());
    if (answer) report.summary(*answer);
    exit_code = report.finish(answer ? kExitOk : report.fail(answer.error()));
    // In the payload the machine reboots next: leave the outcome on screen
    // (an error for troy.wait= seconds, 60 by default; success 10 s at most).
    if (!options->cmdline.empty()) ::sleep(answer ? std::min(10u, wait_seconds(options->cmdline)) : wait_seconds(options->cmdline));
  });
}

void register_lab_checkin(CLI::App& lab, int& exit_code, const Console& console) {
  auto options = std::make_shared<LabCheckinOptions>();
  CLI::App* checkin = lab.add_subcommand("checkin", "Teacher check-ins: receive (CGI), list, publish");
  checkin->require_subcommand(1);

  CLI::App* receive = checkin->add_subcommand(
      "receive", "CGI program for POST /cgi-bin/checkin: a teacher machine's child, checked, into the inbox");
  receive->add_option("--served", options->served, "The lab's served directory (default: $TROY_SERVED)")
      ->envname("TROY_SERVED");
  add_inbox_option(*receive, *options);
  receive->add_option("--hosts", options->hosts, "The hosts file (default: $TROY_HOSTS, else /etc/troy/hosts)")
      ->envname("TROY_HOSTS");
  receive->callback([options, &exit_code] { exit_code = run_receive(*options); });

  CLI::App* list = checkin->add_subcommand("list", "The check-ins waiting in the inbox");
  add_inbox_option(*list, *options);
  list->callback([options, &exit_code] { exit_code = run_list(*options); });

  CLI::App* publish = checkin->add_subcommand(
      "publish", "Publish a check-in as the next version (as troy publish does): ENTRY of the inbox, or a FILE (a "
                 "path with '/', e.g. on a mounted share); its parent must be the newest version");
  publish->add_option("ENTRY", options->entry, "An entry of troy lab checkin list, or a file path")->required();
  publish->add_option("--name", options->name, "The new version's name")->required();
  publish->add_option("--key", options->key, "The lab's Ed25519 private key (PEM)")->required();
  publish->add_option("--served", options->served, "The lab's served directory (default: $TROY_SERVED, else lab.conf's)")
      ->envname("TROY_SERVED");
  add_lab_config_option(*publish, options->config);
  add_inbox_option(*publish, *options);
  add_report_options(*publish, options->report);
  publish->callback([options, &exit_code, &console] {
    CommandReport report("lab checkin publish", options->report, console);
    report.json()["entry"] = options->entry;
    report.json()["name"] = options->name;
    auto what = publish_entry(*options, console, report.json());
    if (what) report.summary(fmt::format("published {}; manifest signed", *what));
    exit_code = report.finish(what ? kExitOk : report.fail(what.error()));
  });
}

}  // namespace troy::cli
