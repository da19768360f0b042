#include "update.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include <fmt/format.h>

#include "apply.h"
#include "chunk_fetch.h"
#include "chunk_index.h"
#include "delivery.h"
#include "fingerprint.h"
#include "http_source.h"
#include "machine_state.h"
#include "manifest.h"
#include "progress.h"
#include "server.h"
#include "signature.h"
#include "source.h"
#include "status_page.h"
#include "sync_update.h"
#include "text.h"
#include "versions.h"
#include "vhdboot.h"

namespace troy::cli {
namespace {

constexpr uint64_t kMaxManifestBytes = 16 << 20;
constexpr uint64_t kMaxSignatureBytes = 4096;
constexpr int kReportAttempts = 3;
constexpr size_t kMaxMessageBytes = 4000;  // the server takes at most 4096

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm parts{};
  ::gmtime_r(&now, &parts);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &parts);
  return text;
}

std::string read_line(const std::string& path) {
  std::ifstream file(path);
  std::string line;
  std::getline(file, line);
  return line;
}

// Everything one run learns, for the outcome and the report.
struct Run {
  Run(const UpdateOptions& update_options, const Say& screen) : options(update_options), say(screen) {}
  const UpdateOptions& options;
  const Say& say;
  std::unique_ptr<LabSource> source;
  Manifest manifest;
  std::optional<DiskInfo> disk;
  std::string device;
  UpdateOutcome outcome;
  nlohmann::json steps = nlohmann::json::array();
  std::optional<MachineState> state;  // kept beyond the image on the disk (machine_state.h)
  std::string state_note = "not kept: no disk was chosen";  // for the report
  std::string machine;                // the name in reports
  std::string state_device;           // where the state is kept: the disk, or a vhdboot lab's file
  uint64_t state_offset = 0;          // and at which offset (the image's size on a raw disk)
  std::string mounted;                // a vhdboot lab's NTFS partition, unmounted at the very end
  bool reports_progress = false;      // from the manifest's check on: the state is loaded
};

Result<void> make_work_dir(const std::string& work) {
  std::string path;
  for (size_t at = 0; at != std::string::npos;) {
    const size_t slash = work.find('/', at + 1);
    path = work.substr(0, slash);
    at = slash;
    if (path.empty()) continue;
    if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST)
      return Error{fmt::format("--work {}: cannot create {}: {}", work, path, std::strerror(errno))};
  }
  return success();
}

// The manifest, only once its signature verifies with the lab's key.
Result<void> fetch_manifest(Run& run) {
  TROY_ASSIGN(key, load_ed25519_key(run.options.key, true));
  TROY_ASSIGN(source, LabSource::open(run.options.server));
  run.source = std::move(source);
  const std::string name = run.source->location() + "/manifest";
  TROY_ASSIGN(text, run.source->fetch_small("manifest", kMaxManifestBytes));
  TROY_ASSIGN(signature, run.source->fetch_small("manifest.sig", kMaxSignatureBytes));
  if (auto verified = verify(key, std::as_bytes(std::span(text)), signature, name + ".sig"); !verified)
    return Error{fmt::format("manifest refused: {}", verified.error().message)};
  auto manifest = parse_manifest(text, name);
  if (!manifest) return Error{fmt::format("manifest refused: {}", manifest.error().message)};
  run.manifest = std::move(*manifest);
  run.outcome.after = decide_after(run.manifest.after, run.options.requested_after);
  const size_t deltas = run.manifest.versions.size() - 1;
  run.say(fmt::format("manifest verified: base {}, {} delta(s), disk size {}", run.manifest.versions.front().name,
                      deltas, run.manifest.disk_size));
  return success();
}

Result<void> pick_disk(Run& run) {
  TROY_ASSIGN(disks, list_disks(run.options.sysfs + "/block"));
  TROY_ASSIGN(disk, choose_disk(disks, run.manifest.disk_rules, run.options.disk));
  run.device = run.options.dev + "/" + disk.name;
  run.outcome.disk = run.device;
  run.say(fmt::format("disk: {} {}", run.device, describe(disk).substr(disk.name.size() + 1)));
  run.state_device = run.device;
  run.state_offset = run.manifest.disk_size;
  // A native-VHD-boot disk holds partitions; the image is a file on one of them.
  if (!run.manifest.vhdboot && disk.size < run.manifest.disk_size)
    return Error{fmt::format("{} holds {} bytes, smaller than the lab's disk of {} bytes", run.device, disk.size,
                             run.manifest.disk_size)};
  run.disk = std::move(disk);
  return success();
}

std::string local_path(const Run& run, const std::string& served_file) {
  return run.options.work + "/" + served_file.substr(served_file.rfind('/') + 1);
}

// A served file into the work folder, checked against the manifest; with a
// progress line as the console says.
Result<std::string> fetch_file(Run& run, const std::string& what, const std::string& file, uint64_t size,
                               const std::string& sha256) {
  const std::string destination = local_path(run, file);
  Progress progress(what, size, run.options.console);
  TROY_TRY(run.source->fetch_checked(file, size, sha256, destination,
                                     [&progress](uint64_t done, uint64_t) { progress.update(done); }));
  progress.finish();
  return destination;
}

Result<std::string> fetch_fingerprint(Run& run, size_t index) {
  const ManifestVersion& version = run.manifest.versions[index];
  return fetch_file(run, "fingerprint " + version.name, version.fingerprint, version.fingerprint_size,
                    version.fingerprint_sha256);
}

Result<DiskState> check_against(Run& run, size_t index) {
  const ManifestVersion& version = run.manifest.versions[index];
  TROY_ASSIGN(path, fetch_fingerprint(run, index));
  TROY_ASSIGN(fingerprint, read_fingerprint(path));
  if (fingerprint.image_id != version.image_id)
    return Error{fmt::format("{}: made for the image {}, but the manifest's {} is {}", version.fingerprint,
                             fingerprint.image_id, version.name, version.image_id)};
  TROY_ASSIGN(check, check_disk(fingerprint, run.device, run.options.console));
  run.say(fmt::format("disk against {}: {}", version.name, describe(check)));
  return check.state;
}

std::string plan_text(const Run& run, size_t first) {
  const auto& versions = run.manifest.versions;
  std::string names;
  uint64_t bytes = 0;
  for (size_t index = first; index < versions.size(); index++) {
    names += (names.empty() ? "" : ", ") + versions[index].name;
    bytes += versions[index].size;
  }
  return fmt::format("apply {}: {} of deltas", names, human_bytes(bytes));
}

// A delta read from the server piece by piece while it is applied, each
// piece checked against the file's chunk index (signed through the
// manifest): only the index is kept in the work folder.
Result<std::unique_ptr<HttpRangeSource>> open_streamed(Run& run, const ManifestVersion& version) {
  TROY_ASSIGN(index_path, fetch_file(run, "index " + version.name, version.file_index, version.file_index_size,
                                     version.file_index_sha256));
  TROY_ASSIGN(index, read_chunk_index(index_path));
  const std::string index_name = run.source->location() + "/" + version.file_index;
  if (index.total_size != version.size)
    return Error{fmt::format("{}: indexes a file of {} bytes, but the manifest's {} is {} bytes", index_name,
                             index.total_size, version.file, version.size)};
  auto remote = open_remote_image(run.source->location() + "/" + version.file, piece_table(index, index_name));
  if (!remote) ::unlink(index_path.c_str());  // nothing of a refused delta stays in the work folder
  return remote;
}

// Where the delta's bytes come from: streamed when the server is HTTP and
// the manifest has the file's index, else downloaded whole to the work
// folder (a directory source, a manifest published before streaming).
struct DeltaBytes {
  std::string image;  // a URL or the downloaded file
  std::unique_ptr<HttpRangeSource> remote;
};

Result<DeltaBytes> delta_bytes(Run& run, const ManifestVersion& version) {
  if (!version.file_index.empty() && is_http_url(run.source->location())) {
    TROY_ASSIGN(remote, open_streamed(run, version));
    run.say(fmt::format("streaming {} ({} bytes) from {}, each piece verified", version.name, version.size,
                        remote->name()));
    return DeltaBytes{remote->name(), std::move(remote)};
  }
  run.say(fmt::format("downloading {} ({} bytes)", version.name, version.size));
  TROY_ASSIGN(delta, fetch_file(run, "download " + version.name, version.file, version.size, version.sha256));
  return DeltaBytes{delta, nullptr};
}

Result<void> apply_delta(Run& run, size_t index) {
  const auto& versions = run.manifest.versions;
  const ManifestVersion& version = versions[index];
  TROY_ASSIGN(fingerprint, fetch_fingerprint(run, index));
  TROY_ASSIGN(delta, delta_bytes(run, version));
  run.say(fmt::format("applying {} ({} of {}) to {}", version.name, index, versions.size() - 1, run.device));
  ApplyRequest request;
  request.image = delta.image;
  request.image_source = delta.remote.get();
  request.target = run.device;
  request.base_hashes = fingerprint;
  request.console = run.options.console;
  ApplyOutcome applied;
  Diagnostics diagnostics;  // "parent not found: applying the delta alone" is the normal case here
  const auto started = std::chrono::steady_clock::now();
  const std::string held_before = run.outcome.held;
  run.outcome.held = "incomplete";  // until the apply ends well; the next run completes it
  auto result = apply_image(request, applied, diagnostics);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  run.outcome.written = run.outcome.written || applied.stats.writing_started;
  if (delta.remote) ::unlink(local_path(run, version.file_index).c_str());  // small, fetched again if needed
  if (!applied.stats.writing_started && !result) run.outcome.held = held_before;
  nlohmann::json step = {{"version", version.name}, {"action", "apply"}};
  step["apply"] = apply_report(request, applied, seconds, result ? "" : result.error().message);
  if (delta.remote) step["apply"]["bytes_fetched"] = delta.remote->stats().bytes_fetched;
  run.steps.push_back(step);
  if (!result) return Error{fmt::format("applying {} to {} failed: {}", version.name, run.device, result.error().message)};
  const std::string fetched =
      delta.remote ? fmt::format(", {} bytes fetched", delta.remote->stats().bytes_fetched) : std::string();
  run.say(fmt::format("applied {}: wrote {} bytes, {} bytes already there{}, {:.1f} s", version.name,
                      applied.stats.bytes_written, applied.stats.bytes_skipped, fetched, seconds));
  run.outcome.held = version.name;
  if (!delta.remote) ::unlink(delta.image.c_str());  // in the boot payload the work folder is RAM
  return success();
}

// The state stays usable only while it can be written back; a failure here
// never stops the update, but the screen and the report say it loudly.
void state_not_kept(Run& run, const std::string& why) {
  run.state.reset();
  run.state_note = "not kept: " + why;
  run.say(fmt::format("WARNING: Troy's state is not kept on this disk, so there is no rollback protection and the "
                      "reports are unauthenticated: {}",
                      why));
}

Result<void> save_state(Run& run) {
  return write_machine_state(run.state_device, run.state_offset, *run.state);
}

// A native-VHD-boot machine keeps its state in a file beside its base
// (vhdboot.h: state_file_path), on the mounted partition.
void load_state_file(Run& run) {
  if (auto prepared = prepare_state_file(run.state_device); !prepared)
    return state_not_kept(run, prepared.error().message);
  auto existing = read_machine_state(run.state_device, 0);
  if (!existing) return state_not_kept(run, existing.error().message);
  run.state_note = "kept";
  if (*existing) {
    run.state = **existing;
    return;
  }
  auto fresh = new_machine_state();
  if (!fresh) return state_not_kept(run, fresh.error().message);
  run.state = *fresh;
  if (auto saved = save_state(run); !saved) return state_not_kept(run, saved.error().message);
  run.say(fmt::format("machine state created in {} (a new report key)", run.state_device));
}

// The machine's state after the image: read it, or create it (a new key)
// on a disk that has room and no partition there.
void load_state(Run& run) {
  if (run.manifest.vhdboot) return load_state_file(run);
  const uint64_t image_bytes = run.manifest.disk_size;
  std::string why;
  if (!state_fits(run.disk->size, image_bytes, why)) return state_not_kept(run, why);
  auto existing = read_machine_state(run.device, image_bytes);
  if (!existing) return state_not_kept(run, existing.error().message);
  if (*existing) {
    run.state = **existing;
    run.state_note = "kept";
    return;
  }
  if (auto free = check_state_area_free(run.device, image_bytes); !free) return state_not_kept(run, free.error().message);
  auto fresh = new_machine_state();
  if (!fresh) return state_not_kept(run, fresh.error().message);
  run.state = *fresh;
  if (auto saved = save_state(run); !saved) return state_not_kept(run, saved.error().message);
  run.state_note = "kept";
  run.say(fmt::format("machine state created on {} after the image (a new report key)", run.device));
}

// Expiry and serial (manifest.h): a replayed older manifest is refused, and
// the highest serial accepted is remembered before anything is written.
Result<void> check_freshness(Run& run) {
  const std::string name = run.source->location() + "/manifest";
  std::string warning;
  auto fresh = manifest_freshness(run.manifest, name, static_cast<int64_t>(std::time(nullptr)),
                                  run.state ? run.state->highest_serial : 0, warning);
  if (!fresh) return Error{fmt::format("manifest refused: {}", fresh.error().message)};
  if (!warning.empty()) run.say("WARNING: " + warning);
  if (run.state && run.manifest.serial > run.state->highest_serial) {
    run.state->highest_serial = run.manifest.serial;
    if (auto saved = save_state(run); !saved) state_not_kept(run, saved.error().message);
  }
  return success();
}

// Issue 17 (delivery.h): a disk that holds the version before the newest
// exactly receives the announced multicast session first (the changed 4 KiB
// units, each piece verified against the signed index before it is
// written). A complete session brings the disk to the newest version with
// nothing over HTTP; otherwise the delta path that follows takes the pieces
// the session wrote as done (its fingerprint check) and fetches the rest.
// True when the session made the disk the newest version.
bool received_by_multicast(Run& run, const ContentContext& context, size_t held) {
  auto announcement = run.source->fetch_small(kDeliveryFile, 4096);
  const std::string& newest = run.manifest.versions.back().name;
  MulticastReceive receive{run.manifest,
                           held,
                           run.device,
                           context.fetch,
                           announcement ? std::optional<std::string>(*announcement) : std::nullopt,
                           run.options.work + "/udp-receiver.log",
                           run.say,
                           [&run, &newest]() -> Result<void> {
                             if (!run.options.confirm) return success();
                             return run.options.confirm(*run.disk, "receive " + newest +
                                                                       " by multicast, then the delta for the rest");
                           }};
  const auto stats = receive_if_announced(receive);
  if (!stats) return false;
  run.outcome.written = run.outcome.written || stats->bytes_written > 0;
  run.steps.push_back({{"version", newest},
                       {"action", "multicast"},
                       {"multicast", {{"pieces", stats->records},
                                      {"received", stats->received},
                                      {"refused", stats->refused},
                                      {"missing", stats->missing.size()},
                                      {"bytes_streamed", stats->bytes_streamed},
                                      {"bytes_written", stats->bytes_written}}}});
  if (!stats->complete || stats->records == 0) return false;
  run.outcome.held = newest;
  run.outcome.message = fmt::format("{} brought to {} by multicast: {}", run.device, newest, describe(*stats));
  return true;
}

// Issue 16: the version the disk holds decided by content; then the delta
// path, a sync to the newest version, or a refusal (sync_update.h).
Result<void> update_by_content(Run& run) {
  const auto& versions = run.manifest.versions;
  const std::string& newest = versions.back().name;
  TROY_ASSIGN(store, open_chunk_store(run.source->location()));
  ContentContext context{
      run.manifest, run.device,
      [&run](const std::string& what, const ManifestVersion::SignedFile& file) {
        return fetch_file(run, what, file.path, file.size, file.sha256);
      },
      store.get(), run.options.console, run.say};
  const std::string machine = run.options.machine.empty() ? machine_id(run.options.sysfs) : run.options.machine;
  // Only a file the admin wrote in the served directory; anyone faking it can
  // only make this machine sync to the newest signed version.
  const bool reimage = run.source->fetch_small(reimage_flag_path(machine), 4096).ok();
  TROY_ASSIGN(held, held_version_by_content(context));
  PathChoice choice = choose_path(run.manifest, held, reimage);
  run.outcome.held = choice.held;
  run.say(fmt::format("{} {}", run.device, choice.why));
  if (choice.path == DiskPath::UpToDate) {
    run.outcome.message = fmt::format("{} already holds {}, the newest version", run.device, newest);
    return success();
  }
  if (choice.path == DiskPath::Refuse) return Error{fmt::format("{} {}", run.device, choice.why)};
  if (choice.path == DiskPath::Delta && choice.first_to_apply + 1 == versions.size() &&
      received_by_multicast(run, context, choice.first_to_apply - 1))
    return success();
  if (choice.path == DiskPath::Delta) {
    if (run.options.confirm) TROY_TRY(run.options.confirm(*run.disk, plan_text(run, choice.first_to_apply)));
    for (size_t index = choice.first_to_apply; index < versions.size(); index++) TROY_TRY(apply_delta(run, index));
    run.outcome.message = fmt::format("{} brought to {}", run.device, run.outcome.held);
    return success();
  }
  if (run.options.confirm) TROY_TRY(run.options.confirm(*run.disk, "sync to " + newest));
  const auto started = std::chrono::steady_clock::now();
  auto stats = sync_to_newest(context);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  nlohmann::json step = {{"version", newest}, {"action", "sync"}, {"why", choice.why}};
  if (stats)
    step["sync"] = {{"pieces", stats->pieces},           {"kept", stats->kept},
                    {"copied", stats->copied},           {"zeroed", stats->zeroed},
                    {"fetched", stats->fetched},         {"bytes_fetched", stats->bytes_fetched},
                    {"bytes_written", stats->bytes_written}, {"duration_seconds", seconds}};
  run.steps.push_back(step);
  if (!stats) {
    run.outcome.held = "incomplete";
    return Error{fmt::format("syncing {} to {} failed: {}", run.device, newest, stats.error().message)};
  }
  run.outcome.held = newest;
  run.outcome.written = stats->bytes_written > 0;
  run.outcome.message = fmt::format("{} synced to {}: {}", run.device, newest, describe(*stats));
  return success();
}

bool sends_reports(const Run& run);

// ---- native-VHD-boot labs (the manifest's layout vhdboot, lab/vhdboot.h) ----

// The one NTFS partition of the chosen disk the manifest's rule matches,
// mounted read-write with ntfs-3g; unmounted at the end of run_update.
Result<void> mount_partition(Run& run) {
  const VhdBootLayout& layout = *run.manifest.vhdboot;
  TROY_ASSIGN(rule, parse_partition_rule(layout.partition_rule));
  TROY_ASSIGN(partitions, list_partitions(run.options.sysfs + "/block", run.options.dev, run.disk->name,
                                          !rule.label.empty(), read_ntfs_label));
  TROY_ASSIGN(partition, choose_partition(partitions, rule, run.device));
  const std::string device = run.options.dev + "/" + partition.name;
  run.say(fmt::format("partition: {} ({} bytes) matches {}; mounting it with ntfs-3g", device, partition.size,
                      layout.partition_rule));
  TROY_TRY(mount_ntfs(device, run.options.mount_dir));
  run.mounted = run.options.mount_dir;
  run.state_device = state_file_path(run.options.mount_dir + "/" + layout.base);
  run.state_offset = 0;
  return success();
}

std::vector<VersionId> version_ids(const Manifest& manifest) {
  std::vector<VersionId> ids;
  for (const ManifestVersion& version : manifest.versions) ids.push_back({version.name, version.image_id});
  return ids;
}

// The deltas BASE lacks, downloaded beside it (checked against the signed
// manifest), after the room for them and their merges was checked.
Result<std::vector<std::string>> download_deltas(Run& run, const std::string& base, const BasePlan& plan) {
  uint64_t bytes = 0;
  for (const size_t index : plan.to_merge) bytes += run.manifest.versions[index].size;
  std::vector<std::string> files;
  if (plan.to_merge.empty()) return files;
  const std::string folder = delta_folder(base);
  std::error_code error;
  std::filesystem::create_directories(folder, error);
  if (error) return Error{fmt::format("{}: cannot create the folder for the deltas: {}", folder, error.message())};
  TROY_ASSIGN(available, free_bytes(folder));
  TROY_TRY(check_room(available, bytes, folder));
  for (const size_t index : plan.to_merge) {
    const ManifestVersion& version = run.manifest.versions[index];
    const std::string destination = delta_download_path(base, version.name);
    run.say(fmt::format("downloading {} ({} bytes) to {}", version.name, version.size, destination));
    Progress progress("download " + version.name, version.size, run.options.console);
    TROY_TRY(run.source->fetch_checked(version.file, version.size, version.sha256, destination,
                                       [&progress](uint64_t done, uint64_t) { progress.update(done); }));
    progress.finish();
    files.push_back(destination);
  }
  return files;
}

std::string vhdboot_message(const Run& run, const VhdBootOutcome& done, const std::string& base_name) {
  const VhdBootLayout& layout = *run.manifest.vhdboot;
  std::string text = done.merged.empty()
                         ? fmt::format("{} already holds {}, the newest version", base_name, run.outcome.held)
                         : fmt::format("{} brought to {} ({} merged, {} bytes written)", base_name, run.outcome.held,
                                       done.merged.size(), done.bytes_written);
  if (done.child_reset) return text + fmt::format("; {} is a fresh empty child", layout.child);
  if (done.child_kept) return text + fmt::format("; {} kept", layout.child);
  return text + fmt::format("; {} was already fresh", layout.child);
}

Result<void> update_vhdboot(Run& run) {
  const VhdBootLayout& layout = *run.manifest.vhdboot;
  TROY_TRY(mount_partition(run));
  load_state(run);
  TROY_TRY(check_freshness(run));
  run.reports_progress = sends_reports(run);
  const std::string base = run.mounted + "/" + layout.base;
  const std::string child = run.mounted + "/" + layout.child;
  const std::string base_name = fmt::format("{} on {}", layout.base, run.device);
  TROY_ASSIGN(state, read_base_state(base));
  TROY_ASSIGN(plan, plan_base(version_ids(run.manifest), state, base_name));
  const auto& versions = run.manifest.versions;
  run.outcome.held = plan.resume ? "incomplete" : versions[plan.held].name;
  run.say(fmt::format("{} holds {}{}", base_name, versions[plan.held].name,
                      plan.resume ? " (its merge was cut short: finishing it)" : ""));
  const bool keep = keeps_child(layout.keep_child, run.options.keep_child);
  const bool work = plan.resume || !plan.to_merge.empty() || (!keep && !child_is_fresh(child, base));
  if (work && run.options.confirm) {
    std::string what = plan.to_merge.empty() ? std::string("no delta to merge") : plan_text(run, plan.to_merge.front());
    TROY_TRY(run.options.confirm(*run.disk, fmt::format("{} into {}; {}", what, layout.base,
                                                       keep ? "keep " + layout.child : "reset " + layout.child)));
  }
  TROY_ASSIGN(downloaded, download_deltas(run, base, plan));
  VhdBootJob job{base, child, {}, keep};
  if (plan.resume) job.deltas.push_back(state.pending_delta);
  job.deltas.insert(job.deltas.end(), downloaded.begin(), downloaded.end());
  const auto started = std::chrono::steady_clock::now();
  auto done = run_vhdboot(job, run.options.console);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  nlohmann::json step = {{"action", "vhdboot"}, {"version", versions.back().name}, {"base", layout.base},
                         {"child", layout.child}, {"duration_seconds", seconds}};
  if (done) {
    step["merged"] = done->merged.size();
    step["bytes_written"] = done->bytes_written;
    step["child_reset"] = done->child_reset;
    step["child_kept"] = done->child_kept;
  }
  run.steps.push_back(step);
  if (!done) {
    if (plan.resume || !plan.to_merge.empty()) run.outcome.held = "incomplete";
    run.outcome.written = plan.resume || !plan.to_merge.empty();
    return Error{fmt::format("{}: {}", base_name, done.error().message)};
  }
  for (const std::string& file : job.deltas) ::unlink(file.c_str());  // merged: their content is in BASE now
  ::rmdir(delta_folder(base).c_str());
  run.outcome.held = versions.back().name;
  run.outcome.written = !done->merged.empty() || done->child_reset;
  run.outcome.message = vhdboot_message(run, *done, base_name);
  return success();
}

Result<void> update(Run& run) {
  TROY_TRY(make_work_dir(run.options.work));
  TROY_TRY(fetch_manifest(run));
  TROY_TRY(pick_disk(run));
  if (run.manifest.vhdboot) return update_vhdboot(run);
  load_state(run);
  TROY_TRY(check_freshness(run));
  run.reports_progress = sends_reports(run);
  if (decides_by_content(run.manifest)) return update_by_content(run);
  const auto& versions = run.manifest.versions;
  TROY_ASSIGN(decision, find_held_version(run.manifest, [&run](size_t index) { return check_against(run, index); }));
  run.outcome.held = decision.held;
  if (versions.size() == 1) {
    run.outcome.message = fmt::format("only the base {} is published: nothing to apply", versions.front().name);
    return success();
  }
  if (decision.first_to_apply >= versions.size()) {
    run.outcome.message = fmt::format("{} already holds {}, the newest version", run.device, decision.held);
    return success();
  }
  run.say(fmt::format("{} holds {}: {}", run.device, decision.held, plan_text(run, decision.first_to_apply)));
  if (run.options.confirm) TROY_TRY(run.options.confirm(*run.disk, plan_text(run, decision.first_to_apply)));
  for (size_t index = decision.first_to_apply; index < versions.size(); index++) TROY_TRY(apply_delta(run, index));
  run.outcome.message = fmt::format("{} brought to {}", run.device, run.outcome.held);
  return success();
}

// The report's body and the path it is posted to: with the machine's state,
// the next report counter (saved first, so no counter is ever sent twice
// with different reports), the key until the server has it, and
// ?hmac=HMAC-SHA256 over the exact body bytes. Warnings go to `say` (the
// progress reporter's thread queues them for the work's thread).
std::pair<std::string, std::string> signed_report(Run& run, nlohmann::json report, const Say& say) {
  if (!run.state)
    return {"cgi-bin/report", report.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)};
  run.state->report_counter++;
  if (auto saved = save_state(run); !saved) say(fmt::format("WARNING: {}", saved.error().message));
  report["report_counter"] = run.state->report_counter;
  if (!run.state->key_sent) report["machine_key"] = key_hex(*run.state);
  const std::string body = report.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return {"cgi-bin/report?hmac=" + hmac_sha256_hex(run.state->key, body), body};
}

void send_report(Run& run, const std::string& machine) {
  if (!run.options.send_report || !run.source || run.source->location().find("://") == std::string::npos) return;
  if (!normalize_mac(machine)) {
    run.say(fmt::format("report not sent: the server knows machines by MAC address, and '{}' is none (--machine)",
                        machine));
    return;
  }
  for (int attempt = 1; attempt <= kReportAttempts; attempt++) {
    const bool with_key = run.state && !run.state->key_sent;
    const auto [path, body] = signed_report(run, run.outcome.report, run.say);
    auto sent = run.source->post_json(path, body);
    if (sent) {
      run.say(fmt::format("report sent to {}{}", run.source->location(), run.state ? " (authenticated)" : ""));
      if (with_key) {
        run.state->key_sent = true;
        if (auto saved = save_state(run); !saved) run.say(fmt::format("WARNING: {}", saved.error().message));
      }
      return;
    }
    // The server does not know this key (forgotten by the admin, or this
    // disk replaced): send it along from now on.
    if (run.state && run.state->key_sent && sent.error().message.find("HTTP 403") != std::string::npos)
      run.state->key_sent = false;
    if (attempt == kReportAttempts) run.say(fmt::format("could not send the report: {}", sent.error().message));
    else ::sleep(2);
  }
}

// Progress reports to the lab server while the disk is worked on: what is
// being done (progress_state in server.h), how far, authenticated like the
// final report (each takes the next report_counter, saved on the disk first).
// At most one per kProgressReportSeconds, or kProgressStateChangeSeconds
// after the last one when the work moves on to another state (the newest
// progress is sent once that time has passed, even if the work says nothing
// more); the server's own limit for progress (server.h) is looser, so none
// is refused. A report that cannot be sent is not retried; after
// kProgressFailures failures in a row no more are sent.
//
// A thread of its own sends them, so the work never waits for the server:
// when a whole lab reports at once, each report waits its turn for the
// server's reports lock, and a machine that waited for its first one before
// it checked its disk listened for the multicast session seconds late
// (issue 17: 32 machines, docs/delivery.md). The thread has its own
// connection to the server (the run's is the work's), and it is the only
// user of the machine's state from the first progress report to stop():
// the work does not touch the state, and the final report comes after
// stop(). Its warnings are said on the work's thread.
class ProgressReporter final : public ProgressListener {
 public:
  explicit ProgressReporter(Run& run) : run_(run) {}
  ~ProgressReporter() override { stop(); }
  ProgressReporter(const ProgressReporter&) = delete;
  ProgressReporter& operator=(const ProgressReporter&) = delete;

  // On the work's thread (Progress::update): notes the newest progress.
  void progress(const std::string& what, uint64_t done, uint64_t total) override {
    say_queued();
    if (!run_.reports_progress || total == 0) return;
    const std::lock_guard lock(mutex_);
    if (stopping_ || failures_ >= kProgressFailures) return;
    pending_ = Pending{what, done, total, run_.outcome.held};
    if (!thread_.joinable() && !start()) return;
    wake_.notify_one();
  }

  // Before the final report (which takes the next counter): waits for the
  // report on its way, and sends the first one if none went yet, so that
  // every update that worked reports at least the state it began with.
  void stop() {
    {
      const std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_one();
    if (thread_.joinable()) thread_.join();
    say_queued();
  }

 private:
  struct Pending {
    std::string what;
    uint64_t done = 0;
    uint64_t total = 0;
    std::string version;  // the run's held version when the progress came
  };

  // The thread and its connection, opened here on the work's thread (under mutex_).
  bool start() {
    auto opened = LabSource::open(run_.source->location());
    if (!opened) {
      failures_ = kProgressFailures;
      said_.push_back(fmt::format("progress reports not sent: {}", opened.error().message));
      return false;
    }
    connection_ = std::move(*opened);
    thread_ = std::thread([this] { send_when_due(); });
    return true;
  }

  void send_when_due() {
    std::unique_lock lock(mutex_);
    while (true) {
      if (stopping_ && (sent_any_ || !pending_)) return;
      if (!pending_ || failures_ >= kProgressFailures) {
        wake_.wait(lock);
        continue;
      }
      const std::string state = progress_state(pending_->what);
      const auto now = std::chrono::steady_clock::now();
      const auto wait = sent_any_ ? std::chrono::duration<double>(state != last_state_ ? kProgressStateChangeSeconds
                                                                                          : kProgressReportSeconds)
                                  : std::chrono::duration<double>(0);
      const auto due = last_ + std::chrono::duration_cast<std::chrono::steady_clock::duration>(wait);
      if (now < due) {
        wake_.wait_until(lock, due);
        continue;
      }
      const Pending report = std::move(*pending_);
      pending_.reset();
      sent_any_ = true;
      last_ = now;
      last_state_ = state;
      lock.unlock();
      const std::optional<std::string> failure = send(state, report);
      lock.lock();
      if (!failure) {
        failures_ = 0;
      } else if (failure->find("HTTP 429") == std::string::npos && ++failures_ == kProgressFailures) {
        said_.push_back(fmt::format("progress reports stopped: {}", *failure));  // busy (429): the next may pass
      }
    }
  }

  // One report; what went wrong, if it did. Not under mutex_: the work goes
  // on noting progress while the server answers.
  std::optional<std::string> send(const std::string& state, const Pending& report) {
    const int percent = static_cast<int>(std::min<uint64_t>(100, report.done * 100 / report.total));
    const nlohmann::json body = {
        {"troy_report", 1},     {"kind", "progress"}, {"machine", run_.machine},
        {"result", "progress"}, {"state", state},     {"percent", percent},
        {"done", report.done},  {"total", report.total}, {"detail", report.what},
        {"version", report.version},
        {"message", fmt::format("{} {}%", report.what, percent)},
    };
    const Say queue = [this](const std::string& line) {
      const std::lock_guard lock(mutex_);
      said_.push_back(line);
    };
    const bool with_key = run_.state && !run_.state->key_sent;
    const auto [path, text] = signed_report(run_, body, queue);
    auto sent = connection_->post_json(path, text);
    if (!sent) return sent.error().message;
    if (with_key) {
      run_.state->key_sent = true;
      if (auto saved = save_state(run_); !saved) queue(fmt::format("WARNING: {}", saved.error().message));
    }
    return std::nullopt;
  }

  // The thread's warnings, said on the work's thread (Say is not made for two).
  void say_queued() {
    std::vector<std::string> lines;
    {
      const std::lock_guard lock(mutex_);
      lines.swap(said_);
    }
    for (const std::string& line : lines) run_.say(line);
  }

  static constexpr double kProgressReportSeconds = 10;
  static constexpr double kProgressStateChangeSeconds = 3;
  static constexpr int kProgressFailures = 2;
  Run& run_;
  std::unique_ptr<LabSource> connection_;  // the thread's own, opened by start()
  std::mutex mutex_;                       // guards everything below
  std::condition_variable wake_;
  std::optional<Pending> pending_;
  bool stopping_ = false;
  bool sent_any_ = false;
  std::chrono::steady_clock::time_point last_;
  std::string last_state_;
  int failures_ = 0;
  std::vector<std::string> said_;
  std::thread thread_;  // last: started once everything above exists
};

bool sends_reports(const Run& run) {
  return run.options.send_report && run.source && run.source->location().find("://") != std::string::npos &&
         normalize_mac(run.machine).has_value();
}

}  // namespace

std::string decide_after(const std::string& manifest_after, const std::string& requested) {
  if (manifest_after == "poweroff" || requested == "poweroff") return "poweroff";
  return "reboot";
}

KernelSettings kernel_settings(const std::string& cmdline) {
  KernelSettings settings;
  size_t at = 0;
  while (at < cmdline.size()) {
    const size_t end = std::min(cmdline.find_first_of(" \t\n", at), cmdline.size());
    const std::string word = cmdline.substr(at, end - at);
    at = end + 1;
    if (!word.starts_with("troy.")) continue;
    const size_t equals = word.find('=');
    const std::string key = word.substr(0, equals);
    const std::string value = equals == std::string::npos ? "" : word.substr(equals + 1);
    if (key == "troy.server") {
      settings.server = value;
    } else if (key == "troy.then" && (value == "reboot" || value == "poweroff")) {
      settings.then = value;
    } else if (key == "troy.wait" && !value.empty() && value.size() <= 5 &&
               value.find_first_not_of("0123456789") == std::string::npos) {
      settings.wait = static_cast<unsigned>(std::stoul(value));
    } else if (key == "troy.child" && value == "keep") {
      settings.keep_child = true;
    } else if (key == "troy.disk") {
      settings.ignored.push_back(word + ": the signed manifest's disk rules choose the disk, not the command line");
    } else {
      settings.ignored.push_back(word + ": not a setting of the payload (troy.server=URL, "
                                        "troy.then=reboot|poweroff, troy.wait=SECONDS, troy.child=keep)");
    }
  }
  return settings;
}

std::string machine_id(const std::string& sysfs) {
  const std::string net = sysfs + "/class/net";
  std::vector<std::string> names;
  if (DIR* directory = ::opendir(net.c_str())) {
    while (const dirent* entry = ::readdir(directory))
      if (entry->d_name[0] != '.' && std::string(entry->d_name) != "lo") names.emplace_back(entry->d_name);
    ::closedir(directory);
  }
  std::sort(names.begin(), names.end());
  std::string first;
  for (const std::string& name : names) {
    const std::string address = read_line(net + "/" + name + "/address");
    if (address.empty() || address == "00:00:00:00:00:00") continue;
    if (read_line(net + "/" + name + "/operstate") == "up") return address;
    if (first.empty()) first = address;
  }
  return first.empty() ? "unknown" : first;
}

UpdateOutcome run_update(const UpdateOptions& options, const Say& say) {
  UpdateOptions reporting = options;  // its console tells the reporter of each progress update
  Run run(reporting, say);
  run.machine = options.machine.empty() ? machine_id(options.sysfs) : options.machine;
  ProgressReporter reporter(run);
  reporting.console.listener = &reporter;
  const std::string started = utc_now();
  auto result = update(run);
  run.reports_progress = false;
  reporter.stop();  // the final report takes the next counter after the last progress report
  run.outcome.ok = result.ok();
  if (!result) run.outcome.message = result.error().message;
  if (run.outcome.message.size() > kMaxMessageBytes) run.outcome.message.resize(kMaxMessageBytes);
  const std::string& machine = run.machine;
  run.outcome.report = {
      {"troy_report", 1},
      {"machine", machine},
      {"result", run.outcome.ok ? "ok" : "error"},
      {"version", run.outcome.held},
      {"message", run.outcome.message},
      {"disk", run.outcome.disk},
      {"written", run.outcome.written},
      {"payload", options.payload},
      {"started", started},
      {"finished", utc_now()},
      {"steps", run.steps},
      {"state", run.state_note},  // "kept", or "not kept: why" (no rollback protection, unauthenticated)
  };
  send_report(run, machine);
  if (!run.mounted.empty()) {  // after the report: its counter is saved in the state file there first
    if (auto unmounted = unmount_ntfs(run.mounted); !unmounted) {
      run.outcome.ok = false;
      run.outcome.message = fmt::format("{} (and the NTFS partition could not be unmounted: {})",
                                        run.outcome.message, unmounted.error().message);
    }
  }
  return run.outcome;
}

}  // namespace troy::cli
