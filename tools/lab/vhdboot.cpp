#include "vhdboot.h"

#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "chain.h"
#include "files.h"
#include "image.h"
#include "merge.h"
#include "merge_journal.h"
#include "output.h"
#include "text.h"
#include "updater.h"
#include "writer.h"

namespace troy::cli {
namespace {

namespace fs = std::filesystem;

std::string absolute(const std::string& path) {
  std::error_code error;
  const fs::path resolved = fs::weakly_canonical(fs::absolute(path), error);
  return error ? path : resolved.string();
}

std::optional<uint64_t> parse_number(std::string_view text) {
  uint64_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc{} || end != text.data() + text.size() || text.empty()) return std::nullopt;
  return value;
}

std::string read_sysfs(const std::string& path) {
  std::ifstream file(path);
  std::string text;
  std::getline(file, text);
  return text;
}

bool same_id(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return std::tolower(x) == std::tolower(y); });
}

// An NTFS boot sector: OEM id "NTFS    " at byte 3, 0x55 0xAA at 510.
bool holds_ntfs(const std::string& device) {
  const int fd = ::open(device.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  unsigned char sector[512] = {};
  const ssize_t n = ::pread(fd, sector, sizeof sector, 0);
  ::close(fd);
  return n == 512 && std::memcmp(sector + 3, "NTFS    ", 8) == 0 && sector[510] == 0x55 && sector[511] == 0xAA;
}

bool rule_matches(const PartitionRule& rule, const PartitionInfo& partition) {
  if (rule.number && *rule.number != partition.number) return false;
  if (rule.size && *rule.size != partition.size) return false;
  if (!rule.label.empty() && ::fnmatch(rule.label.c_str(), partition.label.c_str(), 0) != 0) return false;
  return partition.ntfs;
}

std::string describe(const PartitionInfo& partition) {
  std::string text = fmt::format("{} (number {}, {} bytes, {}", partition.name, partition.number, partition.size,
                                 partition.ntfs ? "NTFS" : "not NTFS");
  if (!partition.label.empty()) text += fmt::format(", label '{}'", printable(partition.label));
  return text + ")";
}

// Runs a program, its standard output captured; its standard error goes to ours.
Result<std::string> run_program(const std::vector<std::string>& argv, bool capture = true) {
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return Error{fmt::format("{}: cannot make a pipe: {}", argv[0], std::strerror(errno))};
  const pid_t pid = ::fork();
  if (pid < 0) return Error{fmt::format("{}: cannot start: {}", argv[0], std::strerror(errno))};
  if (pid == 0) {
    if (capture) ::dup2(pipe_fds[1], 1);  // a daemon (ntfs-3g) must not hold the pipe open
    std::vector<char*> args;
    for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  ::close(pipe_fds[1]);
  if (!capture) ::close(pipe_fds[0]);
  std::string output;
  char buffer[4096];
  ssize_t n = 0;
  while (capture && ((n = ::read(pipe_fds[0], buffer, sizeof buffer)) > 0 || (n < 0 && errno == EINTR)))
    if (n > 0 && output.size() < (1 << 20)) output.append(buffer, static_cast<size_t>(n));
  if (capture) ::close(pipe_fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
    return Error{fmt::format("{}: not found (the payload needs the ntfs-3g package's programs)", argv[0])};
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return Error{fmt::format("{} failed ({})", fmt::join(argv, " "),
                             WIFEXITED(status) ? fmt::format("exit {}", WEXITSTATUS(status)) : "killed")};
  return output;
}

Result<void> sync_folder(const std::string& path) {
  const std::string folder = fs::path(absolute(path)).parent_path().string();
  const int fd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Error{fmt::format("{}: cannot open the folder: {}", folder, std::strerror(errno))};
  const int result = ::fsync(fd);
  ::close(fd);
  if (result != 0 && errno != EINVAL) return Error{fmt::format("{}: fsync failed: {}", folder, std::strerror(errno))};
  return success();
}

std::unique_ptr<Layer> open_quietly(const std::string& path, bool merge_in_progress_ok = false) {
  Diagnostics diagnostics;
  OpenOptions options;
  options.diagnostics = &diagnostics;
  options.merge_in_progress_ok = merge_in_progress_ok;
  auto layer = open_layer(path, options);
  return layer ? std::move(*layer) : nullptr;
}

Result<std::unique_ptr<Layer>> open_image(const std::string& path, bool merge_in_progress_ok = false) {
  Diagnostics diagnostics;
  OpenOptions options;
  options.diagnostics = &diagnostics;
  options.merge_in_progress_ok = merge_in_progress_ok;
  return open_layer(path, options);
}

// How a child at `child` names `base`: by its path relative to the child's
// folder (what Windows follows first), and as an absolute path on the same
// volume, \FOLDER\base.vhdx, which never names this Linux's mount point.
ParentRecord parent_record_on_volume(const std::string& base, const std::string& child, const Guid& id) {
  const fs::path base_path = absolute(base);
  const fs::path child_folder = fs::path(absolute(child)).parent_path();
  ParentRecord record;
  record.link_id = id;
  record.relative_path = base_path.lexically_relative(child_folder).string();
  // The volume's root is the mount point: the nearest folder above on another device.
  struct stat base_stat {};
  fs::path root = base_path.parent_path();
  if (::stat(root.c_str(), &base_stat) == 0) {
    while (root.has_parent_path() && root != root.parent_path()) {
      struct stat up {};
      if (::stat(root.parent_path().c_str(), &up) != 0 || up.st_dev != base_stat.st_dev) break;
      root = root.parent_path();
    }
  }
  record.absolute_path = "/" + base_path.lexically_relative(root).string();
  struct stat st {};
  if (::stat(base_path.c_str(), &st) == 0) record.modified_unix = st.st_mtime;
  return record;
}

Result<void> check_free_space(const std::string& path, uint64_t needed) {
  struct statvfs vfs {};
  const std::string folder = fs::path(absolute(path)).parent_path().string();
  if (::statvfs(folder.c_str(), &vfs) != 0) return success();  // unknown: the write itself will tell
  const uint64_t available = uint64_t{vfs.f_bavail} * vfs.f_frsize;
  if (needed > available)
    return Error{fmt::format("{}: the merge needs about {} of free space for new blocks, but {} has {}; nothing "
                             "merged", path, human_bytes(needed), folder, human_bytes(available))};
  return success();
}

// Re-links DELTA to BASE unless it already names it (the teacher's copy
// named the teacher's file): the id is the same, the locators change.
Result<void> relink_to_base(const std::string& delta, const Layer& delta_layer, const Layer& base) {
  const ParentRecord record = parent_record_on_volume(base.path(), delta, base.link_id());
  const ImageFormat format = delta_layer.info().format == "vhd" ? ImageFormat::Vhd : ImageFormat::Vhdx;
  if (locator_changes(*delta_layer.parent_link(), recorded_link(format, record)).empty()) return success();
  TROY_ASSIGN(updater, open_for_update(delta));
  TROY_TRY(updater->set_parent(record));
  return updater->close();
}

// The merge itself, under troy merge's journal, so that a re-run (or
// `troy merge DELTA` by hand) finishes it. The base takes a new id while it
// changes, as troy merge gives it (the journal records it, so a re-run
// accepts the half-merged base as the delta's parent).
Result<MergeOutcome> merge_under_journal(const std::string& delta, const std::string& base,
                                         const std::optional<MergeJournal>& pending) {
  MergeOutcome outcome;
  outcome.resumed = pending.has_value();
  ChainOptions chain_options;
  Diagnostics diagnostics;
  chain_options.open.diagnostics = &diagnostics;
  chain_options.open.merge_in_progress_ok = true;
  chain_options.warn_same_id = false;
  chain_options.parents = {base};
  chain_options.unverified_hint = "BASE is not the delta's parent";
  TROY_ASSIGN(chain, open_chain(delta, chain_options));
  const Layer& target = *chain.layers()[1];
  TROY_ASSIGN(scope, measure_merge(chain, 1, target.info().block_size));
  if (!pending) TROY_TRY(check_free_space(base, scope.target_blocks_to_allocate * scope.target_block_size));
  MergeJournal journal = pending ? *pending : MergeJournal{};
  journal.child = absolute(delta);
  journal.target = absolute(base);
  journal.stage = MergeStage::Merging;
  troy::UpdateOptions update;
  update.data_write_guid = pending ? pending->target_id : Guid{};
  TROY_ASSIGN(updater, open_for_update(base, update));
  journal.target_id = updater->link_id();
  bool journal_written = pending.has_value();
  auto write_journal = [&]() -> Result<void> {
    if (journal_written) return success();
    journal_written = true;
    return write_merge_journal(journal);
  };
  if (chain.virtual_size() > updater->virtual_size()) {
    TROY_TRY(updater->can_grow(chain.virtual_size()));
    TROY_TRY(write_journal());
    TROY_TRY(updater->set_merge_in_progress(true));
    TROY_TRY(updater->grow(chain.virtual_size()));
  }
  MergeWalk walk;
  walk.target_level = 1;
  TROY_ASSIGN(stats, merge_into(chain, walk, *updater, write_journal));
  outcome.bytes_written = stats.bytes_changed;
  outcome.runs = stats.runs;
  updater.reset();
  TROY_TRY(write_journal());  // the next step changes the base even when the merge did not
  return outcome;
}

// The base, now reading what DELTA reads, takes DELTA's own id. VHDX: its
// first sector written again with the same bytes (a data change, which sets
// the DataWriteGuid the updater is given). VHD keeps its UniqueId when
// changed, so its footers (the end one, then the copy at 0) are given the
// delta's UniqueId (libvhd's vhd::set_unique_id; a re-run writes only a
// footer still differing). The next delta's parent id then proves the
// version, and Windows' fresh child names it.
Result<void> take_id(const std::string& base, const Guid& delta_id) {
  TROY_ASSIGN(opened, open_image(base, true));
  if (opened->info().format == "vhd") return set_vhd_unique_id(base, delta_id);
  opened.reset();
  troy::UpdateOptions update;
  update.data_write_guid = delta_id;
  TROY_ASSIGN(updater, open_for_update(base, update));
  TROY_ASSIGN(layer, open_image(base, true));
  std::vector<std::byte> sector(layer->logical_sector_size());
  TROY_TRY(layer->read(0, sector));
  TROY_TRY(updater->write(0, sector));
  return updater->close();
}

}  // namespace

Result<PartitionRule> parse_partition_rule(std::string_view text) {
  PartitionRule rule;
  bool any = false;
  std::vector<std::string> seen;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    const std::string_view part = text.substr(start, comma - start);
    start = comma + 1;
    const size_t equals = part.find('=');
    if (equals == std::string_view::npos || equals == 0)
      return Error{fmt::format("partition rule '{}': '{}' is not KEY=VALUE (keys: number, size, label)",
                               printable(text), printable(part))};
    const std::string key(part.substr(0, equals));
    const std::string_view value = part.substr(equals + 1);
    if (std::find(seen.begin(), seen.end(), key) != seen.end())
      return Error{fmt::format("partition rule '{}': {} given twice", printable(text), key)};
    seen.push_back(key);
    if (key == "number") {
      const auto number = parse_number(value);
      if (!number || *number == 0 || *number > 256)
        return Error{fmt::format("partition rule '{}': number '{}' is not a partition number (1-256)", printable(text),
                                 printable(value))};
      rule.number = static_cast<unsigned>(*number);
    } else if (key == "size") {
      const auto size = parse_number(value);
      if (!size || *size == 0)
        return Error{fmt::format("partition rule '{}': size '{}' is not a size in bytes", printable(text),
                                 printable(value))};
      rule.size = *size;
    } else if (key == "label") {
      if (value.empty() || value.find_first_of(" \t\n") != std::string_view::npos)
        return Error{fmt::format("partition rule '{}': label '{}' must be non-empty, without blanks (write a space as ?)",
                                 printable(text), printable(value))};
      rule.label = std::string(value);
    } else {
      return Error{fmt::format("partition rule '{}': unknown key '{}' (keys: number, size, label)", printable(text),
                               printable(key))};
    }
    any = true;
    if (comma == text.size()) break;
  }
  if (!any) return Error{"partition rule: empty (give number=N, size=BYTES or label=GLOB)"};
  return rule;
}

std::string describe(const PartitionRule& rule) {
  std::vector<std::string> parts;
  if (rule.number) parts.push_back(fmt::format("number={}", *rule.number));
  if (rule.size) parts.push_back(fmt::format("size={}", *rule.size));
  if (!rule.label.empty()) parts.push_back("label=" + rule.label);
  return fmt::format("{}", fmt::join(parts, ","));
}

Result<std::string> read_ntfs_label(const std::string& device) {
  TROY_ASSIGN(output, run_program({"ntfslabel", device}));  // it takes no "--"; DEVICE is /dev/NAME from sysfs
  while (!output.empty() && (output.back() == '\n' || output.back() == '\r')) output.pop_back();
  return output;
}

Result<std::vector<PartitionInfo>> list_partitions(const std::string& block_dir, const std::string& dev_dir,
                                                   const std::string& disk, bool want_labels,
                                                   const LabelReader& read_label) {
  const std::string folder = block_dir + "/" + disk;
  DIR* dir = ::opendir(folder.c_str());
  if (!dir) return Error{fmt::format("{}: cannot list the disk's partitions: {}", folder, std::strerror(errno))};
  std::vector<PartitionInfo> partitions;
  while (const dirent* entry = ::readdir(dir)) {
    const std::string name = entry->d_name;
    if (!name.starts_with(disk) || name == disk) continue;
    const auto number = parse_number(read_sysfs(folder + "/" + name + "/partition"));
    const auto sectors = parse_number(read_sysfs(folder + "/" + name + "/size"));
    if (!number || !sectors) continue;
    PartitionInfo partition;
    partition.name = name;
    partition.number = static_cast<unsigned>(*number);
    partition.size = *sectors * 512;  // sysfs counts 512-byte sectors whatever the disk's own size
    partition.ntfs = holds_ntfs(dev_dir + "/" + name);
    partitions.push_back(partition);
  }
  ::closedir(dir);
  std::sort(partitions.begin(), partitions.end(), [](auto& a, auto& b) { return a.number < b.number; });
  if (want_labels)
    for (PartitionInfo& partition : partitions) {
      if (!partition.ntfs) continue;
      TROY_ASSIGN(label, read_label(dev_dir + "/" + partition.name));
      partition.label = label;
    }
  return partitions;
}

Result<PartitionInfo> choose_partition(const std::vector<PartitionInfo>& partitions, const PartitionRule& rule,
                                       const std::string& disk) {
  std::vector<const PartitionInfo*> matches;
  for (const PartitionInfo& partition : partitions)
    if (rule_matches(rule, partition)) matches.push_back(&partition);
  if (matches.size() == 1) return *matches.front();
  std::vector<std::string> listed;
  for (const PartitionInfo& partition : partitions) listed.push_back(describe(partition));
  const std::string there = listed.empty() ? "it has no partitions" : fmt::format("its partitions: {}", fmt::join(listed, "; "));
  return Error{fmt::format("{}: {} NTFS partitions match the rule {} (exactly one must); {}", disk,
                           matches.empty() ? "no" : std::to_string(matches.size()), describe(rule), there)};
}

Result<void> check_partition_path(std::string_view path, std::string_view field) {
  auto refuse = [&](std::string_view why) {
    return Error{fmt::format("{} '{}': {} (a path from the partition's root, '/' separators, e.g. troy/base.vhdx)",
                             field, printable(path), why)};
  };
  if (path.empty()) return refuse("empty");
  if (path.front() == '/') return refuse("absolute");
  for (const char c : path)
    if (static_cast<unsigned char>(c) < 0x20 || c == '\\' || c == ':' || c == ' ') return refuse("a control character, a blank, '\\' or ':'");
  size_t start = 0;
  while (start <= path.size()) {
    const size_t slash = std::min(path.find('/', start), path.size());
    const std::string_view part = path.substr(start, slash - start);
    if (part.empty() || part == "." || part == "..") return refuse("an empty, '.' or '..' part");
    if (part.size() > 255) return refuse("a part longer than 255 bytes");
    start = slash + 1;
    if (slash == path.size()) break;
  }
  return success();
}

Result<BaseState> read_base_state(const std::string& base) {
  TROY_ASSIGN(layer, open_image(base, true));
  const LayerInfo info = layer->info();
  if (info.format != "vhdx" && info.format != "vhd")
    return Error{fmt::format("{}: a {} image; native-VHD-boot labs take a VHDX or VHD base (docs/vhdboot.md)", base,
                             info.format)};
  if (layer->parent_link())
    return Error{fmt::format("{}: a differencing image; the base must be a dynamic or fixed VHDX or VHD", base)};
  TROY_ASSIGN(journal, read_merge_journal(base));
  BaseState state;
  state.format = info.format;
  state.id = layer->format_id(layer->link_id());
  if (!journal) return state;
  // Half merged: it counts as the version being merged, whose delta (kept
  // on the partition until the merge is complete) says which.
  state.pending_delta = journal->child;
  auto delta = open_image(journal->child);
  if (!delta)
    return Error{fmt::format("{}: a merge of {} into it is unfinished, and that delta cannot be opened ({}); the base "
                             "is half merged and must be restored from the server", base, printable(journal->child),
                             delta.error().message)};
  state.id = (*delta)->format_id((*delta)->link_id());
  return state;
}

Result<BasePlan> plan_base(const std::vector<VersionId>& versions, const BaseState& base, const std::string& base_path) {
  BasePlan plan;
  auto held = std::find_if(versions.begin(), versions.end(), [&](const VersionId& v) { return same_id(v.image_id, base.id); });
  if (held == versions.end()) {
    std::vector<std::string> names;
    for (const VersionId& version : versions) names.push_back(fmt::format("{} {}", version.name, version.image_id));
    return Error{fmt::format("{}: its id {} is no version this lab published ({}); it is not a base to merge into, "
                             "nothing changed", base_path, base.id, fmt::join(names, ", "))};
  }
  plan.held = static_cast<size_t>(held - versions.begin());
  plan.resume = !base.pending_delta.empty();
  for (size_t i = plan.held + 1; i < versions.size(); i++) plan.to_merge.push_back(i);
  return plan;
}

Result<MergeOutcome> merge_delta_into_base(const std::string& delta, const std::string& base, const Console& console) {
  TROY_ASSIGN(journal, read_merge_journal(base));
  if (journal && !same_file(journal->child, delta))
    return Error{fmt::format("{}: a merge of {} into it is unfinished; it must be finished first", base,
                             printable(journal->child))};
  TROY_ASSIGN(delta_layer, open_image(delta));
  TROY_ASSIGN(base_format, open_image(base, true));
  const std::string format = base_format->info().format;
  base_format.reset();
  if (delta_layer->info().format != format || !delta_layer->parent_link())
    return Error{fmt::format("{}: not a differencing {} (the format of {})", delta, format == "vhd" ? "VHD" : "VHDX",
                             base)};
  const Guid delta_id = delta_layer->link_id();
  if (!journal) {
    TROY_ASSIGN(base_layer, open_image(base));
    if (delta_layer->parent_link()->expected_id != base_layer->link_id())
      return Error{fmt::format("{}: its parent id (parent_linkage) is {}, but {} holds {}: the base is not this "
                               "delta's base; nothing merged", delta, delta_layer->format_id(delta_layer->parent_link()->expected_id),
                               base, base_layer->format_id(base_layer->link_id()))};
    TROY_TRY(relink_to_base(delta, *delta_layer, *base_layer));
  }
  uint64_t size_before = 0;
  struct stat st {};
  if (::stat(base.c_str(), &st) == 0) size_before = static_cast<uint64_t>(st.st_size);
  console.say("merging {} into {}{}", delta, base, journal ? " (finishing an interrupted merge)" : "");
  // A kill after the base took the delta's id: the merge itself is complete.
  TROY_ASSIGN(base_now, open_image(base, true));
  const bool merged = journal && base_now->link_id() == delta_id;
  MergeOutcome outcome;
  outcome.resumed = journal.has_value();
  if (!merged) {
    TROY_ASSIGN(done, merge_under_journal(delta, base, journal));
    outcome = done;
    TROY_TRY(take_id(base, delta_id));
  } else if (format == "vhd") {
    TROY_TRY(take_id(base, delta_id));  // cut between its two footers: the copy at 0 written now
  }
  TROY_ASSIGN(filled, fill_holes(base, journal ? 0 : size_before));
  outcome.holes_filled = filled;
  TROY_TRY(remove_merge_journal(base));
  return outcome;
}

std::optional<uint32_t> ntfs_attributes(const std::string& path) {
  unsigned char value[4] = {};
  if (::getxattr(path.c_str(), "system.ntfs_attrib_be", value, sizeof value) == 4)
    return uint32_t{value[0]} << 24 | uint32_t{value[1]} << 16 | uint32_t{value[2]} << 8 | value[3];
  if (::getxattr(path.c_str(), "system.ntfs_attrib", value, sizeof value) == 4)
    return uint32_t{value[3]} << 24 | uint32_t{value[2]} << 16 | uint32_t{value[1]} << 8 | value[0];
  return std::nullopt;
}

Result<void> check_bootable_file(const std::string& path) {
  const auto attributes = ntfs_attributes(path);
  if (!attributes) return success();
  if (*attributes & kNtfsCompressed)
    return Error{fmt::format("{}: NTFS-compressed (attribute 0x{:x}); Windows cannot boot from a compressed virtual "
                             "disk: uncompress it (compact /u in Windows)", path, *attributes)};
  if (*attributes & kNtfsEncrypted)
    return Error{fmt::format("{}: NTFS-encrypted (attribute 0x{:x}); Windows cannot boot from an encrypted virtual "
                             "disk", path, *attributes)};
  return success();
}

Result<uint64_t> fill_holes(const std::string& path, uint64_t from) {
  auto sparse = [&] {
    const auto attributes = ntfs_attributes(path);
    return attributes && (*attributes & kNtfsSparse);
  };
  if (!sparse()) return uint64_t{0};
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return Error{fmt::format("{}: cannot open to fill its holes: {}", path, std::strerror(errno))};
  struct stat st {};
  ::fstat(fd, &st);
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  constexpr uint64_t kPiece = 1 << 20;
  constexpr size_t kUnit = 4096;
  auto all_zero = [](const char* bytes, size_t n) { return std::all_of(bytes, bytes + n, [](char c) { return c == 0; }); };
  std::vector<char> buffer(kPiece);
  uint64_t rewritten = 0;
  for (int pass = 0; pass < 2 && sparse(); pass++, from = 0) {
    for (uint64_t offset = from / kPiece * kPiece; offset < size; offset += kPiece) {
      const size_t length = static_cast<size_t>(std::min(kPiece, size - offset));
      if (::pread(fd, buffer.data(), length, static_cast<off_t>(offset)) != static_cast<ssize_t>(length)) {
        ::close(fd);
        return Error{fmt::format("{}: read failed at offset {} while filling holes", path, offset)};
      }
      // Holes are whole clusters (4 KiB and up): every 4 KiB unit that
      // reads zeros is written, nearby ones in one write.
      for (size_t unit = 0; unit < length;) {
        const size_t unit_end = std::min(unit + kUnit, length);
        if (!all_zero(buffer.data() + unit, unit_end - unit)) {
          unit = unit_end;
          continue;
        }
        size_t run_end = unit_end;
        while (run_end < length && all_zero(buffer.data() + run_end, std::min(run_end + kUnit, length) - run_end))
          run_end = std::min(run_end + kUnit, length);
        const size_t run = run_end - unit;
        if (::pwrite(fd, buffer.data() + unit, run, static_cast<off_t>(offset + unit)) != static_cast<ssize_t>(run)) {
          ::close(fd);
          return Error{fmt::format("{}: write failed at offset {} while filling holes: {}", path, offset + unit,
                                   std::strerror(errno))};
        }
        rewritten += run;
        unit = run_end;
      }
    }
    if (::fsync(fd) != 0) {
      ::close(fd);
      return Error{fmt::format("{}: fsync failed: {}", path, std::strerror(errno))};
    }
  }
  ::close(fd);
  if (sparse())
    return Error{fmt::format("{}: still sparse after its holes were written; Windows refuses a sparse virtual disk",
                             path)};
  return rewritten;
}

bool child_is_fresh(const std::string& child, const std::string& base) {
  auto child_layer = open_quietly(child);
  auto base_layer = open_quietly(base);
  if (!child_layer || !base_layer || !child_layer->parent_link()) return false;
  if (child_layer->parent_link()->expected_id != base_layer->link_id()) return false;
  if (child_layer->info().allocated_blocks != 0) return false;
  const auto attributes = ntfs_attributes(child);
  return !(attributes && (*attributes & kNtfsSparse));
}

Result<void> make_fresh_child(const std::string& child, const std::string& base) {
  TROY_ASSIGN(base_layer, open_image(base));
  ImageSpec spec;
  spec.format = base_layer->info().format == "vhd" ? ImageFormat::Vhd : ImageFormat::Vhdx;
  spec.type = ImageType::Differencing;
  spec.virtual_size = base_layer->virtual_size();
  spec.logical_sector_size = base_layer->logical_sector_size();
  spec.parent = parent_record_on_volume(base, child, base_layer->link_id());
  TROY_ASSIGN(complete, complete_spec(spec));
  TROY_ASSIGN(out, OutputFile::create(child, true, {base}));
  TROY_ASSIGN(writer, create_image(complete, out));
  TROY_TRY(writer->finish());
  TROY_TRY(out.commit());
  TROY_TRY(fill_holes(child, 0));
  return success();
}

Result<void> remove_child(const std::string& child) {
  if (::unlink(child.c_str()) != 0) {
    if (errno == ENOENT) return success();
    return Error{fmt::format("{}: cannot remove the student's child: {}", child, std::strerror(errno))};
  }
  return sync_folder(child);
}

Result<VhdBootOutcome> run_vhdboot(const VhdBootJob& job, const Console& console) {
  VhdBootOutcome outcome;
  TROY_ASSIGN(state, read_base_state(job.base));
  TROY_TRY(check_bootable_file(job.base));
  if (!state.pending_delta.empty() &&
      std::none_of(job.deltas.begin(), job.deltas.end(), [&](auto& d) { return same_file(d, state.pending_delta); }))
    return Error{fmt::format("{}: a merge of {} into it is unfinished, and that delta is not among the ones given; "
                             "give it again (troy merge {} finishes it by hand)", job.base,
                             printable(state.pending_delta), printable(state.pending_delta))};
  // The deltas up to the one whose own id BASE carries are held already
  // (given v2 v3 to a base at v3, both are skipped).
  size_t held = 0;
  if (state.pending_delta.empty())
    for (size_t i = 0; i < job.deltas.size(); i++) {
      TROY_ASSIGN(layer, open_image(job.deltas[i]));
      if (same_id(layer->format_id(layer->link_id()), state.id)) held = i + 1;
    }
  bool child_removed = false;
  for (size_t i = 0; i < job.deltas.size(); i++) {
    const std::string& delta = job.deltas[i];
    const bool pending = !state.pending_delta.empty() && same_file(delta, state.pending_delta);
    if (!pending) {
      TROY_ASSIGN(layer, open_image(delta));
      if (i < held) {
        outcome.skipped.push_back(delta);
        continue;
      }
      if (!layer->parent_link() || !same_id(layer->format_id(layer->parent_link()->expected_id), state.id))
        return Error{fmt::format("{}: its parent id (parent_linkage) is {}, but {} holds {}: the base is not this "
                                 "delta's base; nothing merged", delta,
                                 layer->parent_link() ? layer->format_id(layer->parent_link()->expected_id) : "none",
                                 job.base, state.id)};
    }
    if (!child_removed) {  // Windows must never boot the old child over a half-merged base
      TROY_TRY(remove_child(job.child));
      child_removed = true;
    }
    TROY_ASSIGN(merged, merge_delta_into_base(delta, job.base, console));
    outcome.merged.push_back(delta);
    outcome.bytes_written += merged.bytes_written;
    TROY_ASSIGN(now, read_base_state(job.base));
    state = now;
  }
  TROY_TRY(fill_holes(job.base, 0));  // a kill after a merge, before its holes were filled
  const bool base_changed = !outcome.merged.empty();
  if (job.keep_child && !base_changed && fs::exists(job.child)) {
    auto child = open_quietly(job.child);
    auto base = open_quietly(job.base);
    if (child && base && child->parent_link() && child->parent_link()->expected_id == base->link_id()) {
      outcome.child_kept = true;
      return outcome;
    }
  }
  if (child_is_fresh(job.child, job.base)) return outcome;
  TROY_TRY(make_fresh_child(job.child, job.base));
  outcome.child_reset = true;
  return outcome;
}

std::string delta_folder(const std::string& base) {
  const fs::path parent = fs::path(base).parent_path();
  return (parent.empty() ? fs::path("troy-deltas") : parent / "troy-deltas").string();
}

std::string delta_download_path(const std::string& base, const std::string& version_name) {
  const std::string extension = fs::path(base).extension().string();
  const bool vhd = extension == ".vhd" || extension == ".VHD";
  return delta_folder(base) + "/" + version_name + (vhd ? ".vhd" : ".vhdx");
}

uint64_t room_needed(uint64_t delta_bytes) {
  constexpr uint64_t kSlack = 64 << 20;
  constexpr uint64_t kLimit = UINT64_MAX / 4;
  const uint64_t bytes = std::min(delta_bytes, kLimit);
  return bytes * 2 + kSlack;
}

Result<void> check_room(uint64_t available, uint64_t delta_bytes, const std::string& folder) {
  const uint64_t needed = room_needed(delta_bytes);
  if (available >= needed) return success();
  return Error{fmt::format("{}: {} free, but downloading {} of deltas and merging them needs about {} (the deltas, "
                           "as much again for the base's new blocks, 64 MiB slack); nothing downloaded or merged: "
                           "free {} on the partition",
                           folder, human_bytes(available), human_bytes(delta_bytes), human_bytes(needed),
                           human_bytes(needed - available))};
}

Result<uint64_t> free_bytes(const std::string& folder) {
  struct statvfs vfs {};
  if (::statvfs(folder.c_str(), &vfs) != 0)
    return Error{fmt::format("{}: cannot read its free space: {}", folder, std::strerror(errno))};
  return uint64_t{vfs.f_bavail} * vfs.f_frsize;
}

bool keeps_child(bool manifest_keeps, bool machine_keeps) { return manifest_keeps || machine_keeps; }

std::string state_file_path(const std::string& base) {
  const fs::path parent = fs::path(base).parent_path();
  return (parent.empty() ? fs::path("troy-state") : parent / "troy-state").string();
}

Result<void> prepare_state_file(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && static_cast<uint64_t>(st.st_size) >= (1 << 20)) return success();
  TROY_ASSIGN(out, OutputFile::create(path, true, {}));
  std::vector<std::byte> zeros(1 << 20);
  TROY_TRY(out.write_at(0, zeros));
  TROY_TRY(out.commit());
  return success();
}

Result<void> mount_ntfs(const std::string& device, const std::string& folder) {
  std::error_code error;
  fs::create_directories(folder, error);
  TROY_TRY(run_program({"ntfs-3g", "-o", "rw,nocompression,big_writes", device, folder}, false));
  return success();
}

Result<void> unmount_ntfs(const std::string& folder) {
  ::sync();
  if (::umount2(folder.c_str(), 0) != 0)
    return Error{fmt::format("{}: cannot unmount: {}", folder, std::strerror(errno))};
  ::sync();
  return success();
}

}  // namespace troy::cli
