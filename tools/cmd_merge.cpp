// troy merge CHILD [--into ANCESTOR]: the parent (or ANCESTOR), at its own
// path, comes to hold exactly what CHILD reads. troy rollback UNDO merges an
// undo image back. The steps and what a crash leaves: docs/merge.md.
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <chrono>
#include <filesystem>
#include <optional>

#include <fmt/format.h>

#include "chain.h"
#include "command_report.h"
#include "common.h"
#include "image.h"
#include "image_output.h"
#include "layout.h"
#include "merge.h"
#include "merge_journal.h"
#include "progress.h"
#include "text.h"
#include "updater.h"
#include "writer.h"

namespace troy::cli {
namespace {

namespace fs = std::filesystem;

struct MergeCommand {
  std::string child;
  std::string into;
  std::vector<std::string> parents;  // --parent: CHILD's parent first
  bool rollback = false;             // troy rollback: CHILD is an undo image
  std::vector<std::string> relink;
  std::string undo;
  bool remove = false;
  bool dry_run = false;
  ReportOptions report;
  bool no_compare = false;
  bool overwrite = false;
};

// What the merge will do, fixed before the target changes and kept in the
// journal, so a re-run after a crash does the same.
struct MergePlan {
  size_t level = 1;  // the target's place in the chain
  MergeJournal journal;
  bool resuming = false;
  MergeStage resume_stage = MergeStage::Started;
};

struct MergeReport {
  MergeStats stats;
  double seconds = 0;
  std::vector<std::string> relinked;
  std::vector<std::string> removed;
  bool undo_written = false;
};

std::string absolute(const std::string& path) {
  std::error_code error;
  const fs::path resolved = fs::weakly_canonical(fs::absolute(path), error);
  return error ? path : resolved.string();
}

bool is_image_name(const fs::path& path) {
  const std::string extension = path.extension().string();
  return extension == ".vhd" || extension == ".vhdx" || extension == ".avhdx" || extension == ".VHD" ||
         extension == ".VHDX" || extension == ".AVHDX";
}

// Images in `folder` whose parent link names `parent_id`, other than `skip`.
std::vector<std::string> children_in(const std::string& folder, const Guid& parent_id,
                                     const std::vector<std::string>& skip) {
  std::vector<std::string> found;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(folder.empty() ? "." : folder, error)) {
    if (!entry.is_regular_file() || !is_image_name(entry.path())) continue;
    const std::string path = absolute(entry.path().string());
    if (std::any_of(skip.begin(), skip.end(), [&](const std::string& s) { return same_file(s, path); })) continue;
    Diagnostics diagnostics;
    OpenOptions options;
    options.diagnostics = &diagnostics;
    options.merge_in_progress_ok = true;
    auto layer = open_layer(path, options);
    if (layer && (*layer)->parent_link() && (*layer)->parent_link()->expected_id == parent_id) found.push_back(path);
  }
  std::sort(found.begin(), found.end());
  return found;
}

Result<size_t> target_level(const Chain& chain, const std::string& into) {
  if (chain.layers().size() < 2)
    return Error{fmt::format("{}: not a differencing image: it has no parent to merge into", chain.top().path())};
  if (into.empty()) return size_t{1};
  for (size_t level = 1; level < chain.layers().size(); level++)
    if (same_file(chain.layers()[level]->path(), into)) return level;
  const std::vector<std::string> paths = chain_paths(chain);
  return Error{fmt::format("--into {}: not a parent of {} (its parents: {})", into, chain.top().path(),
                           fmt::join(paths.begin() + 1, paths.end(), ", "))};
}

// An unfinished merge into any layer of the chain but the target must be
// finished first; one into the target must be this one.
Result<std::optional<MergeJournal>> journal_of(const Chain& chain, size_t level, const std::string& child) {
  for (size_t i = 0; i < chain.layers().size(); i++) {
    TROY_ASSIGN(journal, read_merge_journal(chain.layers()[i]->path()));
    if (!journal) continue;
    if (i != level || !same_file(journal->child, child))
      return Error{fmt::format("{}: a merge of {} into it is unfinished; finish it first: troy merge {}",
                               chain.layers()[i]->path(), journal->child, journal->child)};
    return journal;
  }
  return std::optional<MergeJournal>{};
}

Result<std::vector<std::string>> images_to_relink(const Chain& chain, const MergeCommand& command) {
  const Layer& child = chain.top();
  std::vector<std::string> skip = chain_paths(chain);
  std::vector<std::string> relink =
      children_in(fs::path(absolute(child.path())).parent_path().string(), child.link_id(), skip);
  for (const std::string& named : command.relink) {
    Diagnostics diagnostics;
    OpenOptions options;
    options.diagnostics = &diagnostics;
    TROY_ASSIGN(layer, open_layer(named, options));
    if (!layer->parent_link() || layer->parent_link()->expected_id != child.link_id())
      return Error{fmt::format("--relink {}: its parent is not {} (its parent id does not match)", named, child.path())};
    const std::string path = absolute(named);
    if (std::find(relink.begin(), relink.end(), path) == relink.end()) relink.push_back(path);
  }
  return relink;
}

// For a rollback: the images beside the undo image or the target that are
// children of the merged target and hold nothing it does not: the image a
// merge --undo merged (its every sector went into the target), which the
// merge re-linked to the target. Over the rolled-back target they read what
// they read before the merge, so rollback re-links them. A child made later
// over the merged target holds sectors of its own: it is left alone (and
// warned about); an empty one is too, since nothing says it was merged.
Result<std::vector<std::string>> merged_children(const Chain& chain, size_t level,
                                                 const std::vector<std::string>& skip) {
  const Layer& target = *chain.layers()[level];
  std::vector<std::string> candidates;
  for (const std::string& image : {chain.top().path(), target.path()})
    for (const std::string& path : children_in(fs::path(absolute(image)).parent_path().string(), target.link_id(), skip))
      if (std::find(candidates.begin(), candidates.end(), path) == candidates.end()) candidates.push_back(path);
  std::vector<std::string> merged;
  for (const std::string& path : candidates) {
    Diagnostics diagnostics;
    ChainOptions options;
    options.open.diagnostics = &diagnostics;
    for (size_t i = level; i < chain.layers().size(); i++) options.parents.push_back(chain.layers()[i]->path());
    auto child = open_chain(path, options);
    if (!child) continue;  // not readable over the target: not the merged image
    MergeWalk walk;
    TROY_ASSIGN(stats, walk_changes(*child, walk, [](const Change&) { return success(); }));
    if (stats.runs == 0 && stats.bytes_identical > 0) merged.push_back(path);
  }
  return merged;
}

// Two different files that both carry a parent's id, named by its child's
// locators (a base copied beside the child while the original stays where
// the locators first lead): reading either gives the same disk, but a merge
// writes one of them, and which one the admin means cannot be told.
Result<void> refuse_same_id(const Chain& chain) {
  for (size_t i = 0; i < chain.links().size(); i++) {
    const Link& link = chain.links()[i];
    if (link.same_id_elsewhere.empty()) continue;
    const std::string& child = chain.layers()[i]->path();
    return Error{fmt::format("{}: its locators name different files that all carry its parent's id {}: {} ({}) and "
                             "{}; troy will not guess which one to write: re-link it to the one you mean (troy "
                             "relink {} PARENT)",
                             child, link.expected_id, link.path, how_found(link),
                             fmt::join(link.same_id_elsewhere, " and "), child)};
  }
  return success();
}

// The first lines, once every refusal is past and before anything is
// written: the file the merge writes, and where each parent was found.
void announce(const Chain& chain, const MergePlan& plan, bool dry_run, bool undo, const Console& console) {
  std::string how = plan.resuming ? " (finishing an interrupted merge)" : "";
  if (dry_run) how = " (dry run: nothing is written)";
  else if (undo) how += fmt::format(", first saving what it overwrites as {}", plan.journal.undo);
  console.say("merging {} into {}{}", plan.journal.child, plan.journal.target, how);
  for (const std::string& line : parent_lines(chain)) console.say("{}", line);
}

// The undo image has the target's format; its name must say so, as troy
// diff's output must.
Result<void> check_undo_name(const std::string& undo, const Layer& target) {
  const bool vhd = target.info().format == "vhd";
  auto named = output_format(undo, "");
  if (named && (*named == ImageFormat::Vhd) == vhd) return success();
  return Error{fmt::format("--undo {}: the undo image of {} is a {} differencing image; name it .{}", undo,
                           target.path(), vhd ? "VHD" : "VHDX", vhd ? "vhd" : "avhdx")};
}

Result<MergePlan> make_plan(const Chain& chain, const MergeCommand& command) {
  MergePlan plan;
  TROY_ASSIGN(level, target_level(chain, command.into));
  plan.level = level;
  const Layer& target = *chain.layers()[level];
  TROY_ASSIGN(journal, journal_of(chain, level, command.child));
  if (journal) {
    plan.journal = *journal;
    plan.resuming = true;
    plan.resume_stage = journal->stage;
    return plan;
  }
  plan.journal.child = absolute(command.child);
  plan.journal.target = absolute(target.path());
  plan.journal.undo = command.undo.empty() ? "" : absolute(command.undo);
  if (!command.undo.empty()) TROY_TRY(check_undo_name(command.undo, target));
  plan.journal.remove = command.remove;
  TROY_ASSIGN(relink, images_to_relink(chain, command));
  plan.journal.relink = std::move(relink);
  if (command.rollback) {
    std::vector<std::string> skip = chain_paths(chain);
    skip.insert(skip.end(), plan.journal.relink.begin(), plan.journal.relink.end());
    TROY_ASSIGN(merged, merged_children(chain, level, skip));
    plan.journal.relink.insert(plan.journal.relink.end(), merged.begin(), merged.end());
  }
  return plan;
}

// Children of the target that the merge did not re-link (siblings of the
// merged layers) read a changed parent.
void warn_about_siblings(const Chain& chain, size_t level, const Guid& old_id, const std::vector<std::string>& skip,
                         const Console& console) {
  const Layer& target = *chain.layers()[level];
  const std::string folder = fs::path(absolute(target.path())).parent_path().string();
  for (const std::string& sibling : children_in(folder, old_id, skip)) {
    if (target.info().format == "vhdx")
      console.warn("{} is another child of {}: it no longer verifies against the merged image (its DataWriteGuid "
                   "changed) and is refused when opened", sibling, target.path());
    else
      console.warn("{} is another child of {}: VHD cannot tell it that its parent changed; it reads the merged "
                   "content wherever it holds no sectors of its own. Remove or rebuild it", sibling, target.path());
  }
}

Result<void> check_free_space(const std::string& path, uint64_t needed, const std::string& why) {
  struct statvfs vfs {};
  const std::string folder = fs::path(absolute(path)).parent_path().string();
  if (::statvfs(folder.c_str(), &vfs) != 0) return success();  // unknown: the write itself will tell
  const uint64_t available = uint64_t{vfs.f_bavail} * vfs.f_frsize;
  if (needed > available)
    return Error{fmt::format("{}: needs about {} of free space for {}, but {} has {}", path, human_bytes(needed), why,
                             folder, human_bytes(available))};
  return success();
}

Result<void> check_space(const MergePlan& plan, const MergeScope& scope) {
  TROY_TRY(check_free_space(plan.journal.target, scope.target_blocks_to_allocate * scope.target_block_size,
                            fmt::format("{} new blocks", scope.target_blocks_to_allocate)));
  if (!plan.journal.undo.empty() && !plan.resuming)
    TROY_TRY(check_free_space(plan.journal.undo, scope.data_bytes + scope.zero_bytes, "the undo image"));
  return success();
}

// The undo image: the target's present content wherever the merge will
// change it, as a differencing child of the merged target. Created (its name
// checked) before the merge announces itself, filled by fill_undo, flushed,
// and named only by its commit.
Result<std::unique_ptr<NewImage>> create_undo(const Chain& chain, const MergePlan& plan, const Guid& merged_id,
                                              bool overwrite) {
  const Layer& target = *chain.layers()[plan.level];
  ImageSpec spec;
  spec.format = target.info().format == "vhd" ? ImageFormat::Vhd : ImageFormat::Vhdx;
  spec.type = ImageType::Differencing;
  spec.virtual_size = chain.virtual_size();  // the target as merged: grown to the child's size
  spec.logical_sector_size = target.logical_sector_size();
  TROY_ASSIGN(parent, parent_record(target.path(), plan.journal.undo, merged_id));
  spec.parent = parent;
  TROY_ASSIGN(complete, complete_spec(spec));
  return NewImage::create(plan.journal.undo, complete, overwrite, chain_paths(chain));
}

// True when the merge changes anything (the undo image then holds it).
Result<bool> fill_undo(const Chain& chain, MergeWalk walk, NewImage& image) {
  walk.read_old = true;
  ImageWriter& writer = image.writer();
  TROY_ASSIGN(stats, walk_changes(chain, walk, [&](const Change& change) {
    return writer.write(change.offset, change.old_bytes);
  }));
  return stats.runs > 0;
}

// Re-links an image to the merged target unless it already names it.
Result<bool> relink_to_target(const std::string& path, const MergePlan& plan) {
  Diagnostics diagnostics;
  OpenOptions options;
  options.diagnostics = &diagnostics;
  options.merge_in_progress_ok = true;
  auto layer = open_layer(path, options);
  if (layer && (*layer)->parent_link() && (*layer)->parent_link()->expected_id == plan.journal.target_id) return false;
  UpdateOptions update;
  update.repair_header = plan.resuming;  // a crash may have torn a VHD header mid-relink
  TROY_ASSIGN(updater, open_for_update(path, update));
  TROY_ASSIGN(record, parent_record(plan.journal.target, path, plan.journal.target_id));
  TROY_TRY(updater->set_parent(record));
  TROY_TRY(updater->close());
  return true;
}

void fill_merge_json(Json& json, const MergeCommand& command, const MergePlan& plan, const MergeReport& report) {
  const MergeStats& s = report.stats;
  json["child"] = plan.journal.child;
  json["target"] = plan.journal.target;
  json["dry_run"] = command.dry_run;
  json["resumed"] = plan.resuming;
  json["bytes_read"] = s.bytes_read;
  json["bytes_written"] = s.bytes_changed - s.bytes_zeroed;
  json["bytes_zeroed"] = s.bytes_zeroed;
  json["bytes_identical"] = s.bytes_identical;
  json["runs"] = s.runs;
  json["blocks_allocated"] = s.blocks_allocated;
  json["duration_seconds"] = json_seconds(report.seconds);
  json["bytes_per_second"] = bytes_per_second(s.bytes_read, report.seconds);
  json["undo"] = report.undo_written ? Json(plan.journal.undo) : Json(nullptr);
  json["relinked"] = report.relinked;
  json["removed"] = report.removed;
}

std::string file_name(const std::string& path) { return fs::path(path).filename().string(); }

// One short line; the numbers in full with --stats or --json. The first
// line of the merge named both files with their whole paths.
std::string merge_summary(const MergeCommand& command, const MergePlan& plan, const MergeReport& report) {
  const MergeStats& s = report.stats;
  const std::string child = file_name(plan.journal.child);
  const std::string target = file_name(plan.journal.target);
  if (command.dry_run)
    return fmt::format("dry run: would write {} in {} into {}; nothing was changed",
                       short_bytes(static_cast<double>(s.bytes_changed)), count_of(s.runs, "run"), target);
  if (s.runs == 0 && report.relinked.empty() && !plan.resuming)
    return fmt::format("{} already holds what {} reads: nothing changed", target, child);
  // The undo image was named in the first line, re-links and removals in
  // --stats and --json.
  return fmt::format("merged {} into {}: {} written in {}, {}, {}", child, target,
                     short_bytes(static_cast<double>(s.bytes_changed)), count_of(s.runs, "run"),
                     short_duration(report.seconds), short_rate(s.bytes_read, report.seconds));
}

Result<void> dry_run(const Chain& chain, const MergeWalk& walk, MergeReport& report, Json* planned) {
  // With --json the runs go into the object: stdout holds nothing else.
  TROY_ASSIGN(stats, walk_changes(chain, walk, [planned](const Change& change) {
    const char* op = change.zeros ? "zero" : "write";
    if (planned) planned->push_back(Json{{"op", op}, {"offset", change.offset}, {"length_bytes", change.new_bytes.size()}});
    else fmt::print("{} {} {}\n", op, change.offset, change.new_bytes.size());
    return success();
  }));
  report.stats = stats;
  return success();
}

// The steps after the target holds the merged content: re-link, remove the
// merged layers, drop the journal.
Result<void> finish(const Chain& chain, MergePlan& plan, bool journal_written, MergeReport& report) {
  std::vector<std::string> relink = plan.journal.relink;
  // The layer right above the target stays a valid child of it (it reads
  // the same over the merged target), unless it is removed.
  if (!plan.journal.remove) relink.insert(relink.begin(), absolute(chain.layers()[plan.level - 1]->path()));
  for (const std::string& path : relink) {
    if (!journal_written) {  // nothing changed so far, but a re-link must be resumable too
      plan.journal.stage = MergeStage::Relinking;
      TROY_TRY(write_merge_journal(plan.journal));
      journal_written = true;
    }
    TROY_ASSIGN(changed, relink_to_target(path, plan));
    if (changed) report.relinked.push_back(path);
  }
  if (journal_written) TROY_TRY(remove_merge_journal(plan.journal.target));
  if (!plan.journal.remove) return success();
  for (size_t level = 0; level < plan.level; level++) {
    const std::string path = absolute(chain.layers()[level]->path());
    if (::unlink(path.c_str()) == 0) report.removed.push_back(path);
    else if (errno != ENOENT) return Error{fmt::format("{}: cannot remove: {}", path, std::strerror(errno))};
  }
  return success();
}

Result<MergeReport> run(const MergeCommand& command, Diagnostics& diagnostics, const Console& console,
                        CommandReport& out) {
  const auto started = std::chrono::steady_clock::now();
  MergeReport report;
  ChainOptions chain_options;
  chain_options.open.diagnostics = &diagnostics;
  chain_options.open.merge_in_progress_ok = true;
  chain_options.unverified_hint =
      "wrong parent, or the parent changed since the child was made (merged into, rolled back): nothing to merge into";
  chain_options.warn_same_id = false;  // refused below instead
  chain_options.parents = command.parents;
  TROY_ASSIGN(chain, open_chain(command.child, chain_options));
  TROY_TRY(refuse_same_id(chain));
  TROY_ASSIGN(plan, make_plan(chain, command));
  const Layer& target = *chain.layers()[plan.level];
  const uint64_t target_block_size = target.info().block_size;  // 0 for a fixed image
  TROY_ASSIGN(scope, measure_merge(chain, plan.level, target_block_size));
  Progress progress(command.dry_run ? "dry run" : "merge", scope.data_bytes + scope.zero_bytes, console);
  MergeWalk walk;
  walk.target_level = plan.level;
  walk.compare = !command.no_compare;
  walk.progress = [&](uint64_t done) { progress.update(done); };
  if (command.dry_run) {
    announce(chain, plan, true, false, console);
    Json planned = Json::array();
    TROY_TRY(dry_run(chain, walk, report, command.report.json ? &planned : nullptr));
    if (command.report.json) out.json()["planned_runs"] = std::move(planned);
    report.stats.blocks_allocated = scope.target_blocks_to_allocate;  // at most
  } else {
    TROY_TRY(check_space(plan, scope));
    UpdateOptions update;
    update.data_write_guid = plan.resuming ? plan.journal.target_id : Guid{};
    update.new_blocks_expected = scope.target_blocks_to_allocate;
    TROY_ASSIGN(updater, open_for_update(plan.journal.target, update));  // takes the exclusive lock
    plan.journal.target_id = updater->link_id();
    // A child larger than the target grows it, as Hyper-V does; refused
    // before anything changes where the format cannot.
    const bool grows = chain.virtual_size() > updater->virtual_size();
    if (grows) TROY_TRY(updater->can_grow(chain.virtual_size()));
    bool journal_written = plan.resuming;
    auto write_stage = [&](MergeStage stage) -> Result<void> {
      plan.journal.stage = stage;
      journal_written = true;
      return write_merge_journal(plan.journal);
    };
    bool undo_pending = !plan.journal.undo.empty() && (!plan.resuming || plan.resume_stage == MergeStage::Started);
    bool merge_pending = !plan.resuming || plan.resume_stage != MergeStage::Relinking;
    // A finished merge run again with --undo finds its undo image in place:
    // when nothing is left to change, that is no reason to refuse.
    if (undo_pending && !plan.resuming && !command.overwrite && fs::exists(plan.journal.undo)) {
      TROY_ASSIGN(pending, walk_changes(chain, walk, [](const Change&) { return success(); }));
      if (pending.runs == 0) {
        undo_pending = false;
        merge_pending = false;
        report.stats = pending;
      }
    }
    std::unique_ptr<NewImage> undo;
    if (undo_pending) {
      auto created = create_undo(chain, plan, plan.journal.target_id, command.overwrite || plan.resuming);
      if (!created) return created.error();
      undo = std::move(*created);
    }
    announce(chain, plan, false, undo_pending, console);
    if (undo_pending) {
      TROY_ASSIGN(any_change, fill_undo(chain, walk, *undo));
      if (any_change || plan.resuming) {
        TROY_TRY(write_stage(MergeStage::Started));  // the journal owns the undo path before it is named
        TROY_TRY(undo->commit());
        TROY_TRY(write_stage(MergeStage::Merging));
        report.undo_written = true;
      } else {
        merge_pending = false;  // the target already holds it all
      }
    }
    if (merge_pending && grows) {
      if (!journal_written) TROY_TRY(write_stage(MergeStage::Merging));
      TROY_TRY(updater->set_merge_in_progress(true));
      TROY_TRY(updater->grow(chain.virtual_size()));
    }
    if (merge_pending) {
      TROY_ASSIGN(stats, merge_into(chain, walk, *updater, [&] {
        return journal_written ? success() : write_stage(MergeStage::Merging);
      }));
      report.stats = stats;
    } else {
      TROY_TRY(updater->set_merge_in_progress(false));
      TROY_TRY(updater->close());
    }
    // Nothing was written: the target kept its id, which re-links name.
    if (!journal_written) plan.journal.target_id = target.link_id();
    else TROY_TRY(write_stage(MergeStage::Relinking));
    updater.reset();  // releases the lock
    TROY_TRY(finish(chain, plan, journal_written, report));
    if (command.rollback && journal_written && !plan.resuming && plan.journal.relink.empty() &&
        target.info().format == "vhdx")  // a VHD keeps its id: its merged child still opens
      diagnostics.warnings.push_back(fmt::format(
          "no image merged into {} was found beside {} or {}: an image merged with --undo {} reads as it did before "
          "the merge once re-linked: troy relink IMAGE {}", target.path(), command.child, target.path(), command.child,
          target.path()));
    if (journal_written && !plan.resuming) {
      std::vector<std::string> skip = chain_paths(chain);
      skip.insert(skip.end(), plan.journal.relink.begin(), plan.journal.relink.end());
      if (report.undo_written) skip.push_back(plan.journal.undo);
      warn_about_siblings(chain, plan.level, target.link_id(), skip, console);
    }
  }
  progress.finish();
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  fill_merge_json(out.json(), command, plan, report);
  out.summary(merge_summary(command, plan, report));
  return report;
}

int run_merge(const MergeCommand& command, const Console& console) {
  Diagnostics diagnostics;
  CommandReport out(command.rollback ? "rollback" : "merge", command.report, console);
  out.json()["child"] = command.child;
  auto report = run(command, diagnostics, console, out);
  print_warnings(diagnostics, console);
  return out.finish(report ? kExitOk : out.fail(report.error()));
}

// The options merge and rollback share; `what` names the image whose
// sectors are written ("the child", "the undo image").
void add_merge_options(CLI::App& command, MergeCommand& options, const std::string& what) {
  command.add_flag("--dry-run", options.dry_run, "Print the runs that would be written (OFFSET LENGTH), change nothing");
  add_report_options(command, options.report);
  command.add_flag("--no-compare", options.no_compare,
                   "Write every sector " + what + " holds, without first comparing with the target");
}

// Only --parent of the read options (add_read_options): a merge writes
// into the parent, so it must be the image the child was made over, its id
// verified (no --force), and intact (no --ignore-checksums).
constexpr const char* kMergeFooter =
    "No --force or --ignore-checksums, unlike the commands that only read: a merge writes into the parent, which\n"
    "must be the very image the child was made over (its id verified) and intact. troy check IMAGE says what is\n"
    "wrong; troy relink CHILD PARENT makes a child name a parent that moved or was copied.";

}  // namespace

void register_merge(CLI::App& app, int& exit_code, const Console& console) {
  auto options = std::make_shared<MergeCommand>();
  CLI::App* merge = app.add_subcommand(
      "merge", "Merge a differencing image into its parent (or --into an older ancestor), in place, crash-safe");
  merge->add_option("CHILD", options->child, "The differencing image to merge (.vhd, .avhdx)")->required();
  merge->add_option("--into", options->into, "Merge into this ancestor instead of the parent (the layers between "
                                             "are merged too)");
  merge->add_option("--relink", options->relink, "Also re-link this child of CHILD to the merged image (repeatable; "
                                                 "children in CHILD's folder are found by themselves)");
  merge->add_flag("--remove", options->remove, "Delete the merged layers once the merge is complete");
  merge->add_option("--undo", options->undo,
                    "First save what the merge overwrites as this undo image (troy rollback UNDO restores it)");
  merge->add_flag("--overwrite", options->overwrite, "Replace an existing --undo file");
  merge->add_option("--parent", options->parents,
                    "CHILD's parent, the image written; repeat for deeper chains (with --into). Default: found from "
                    "the locators; its id is verified either way")
      ->allow_extra_args(false);
  add_merge_options(*merge, *options, "the child");
  merge->footer(kMergeFooter);
  merge->callback([options, &exit_code, &console] { exit_code = run_merge(*options, console); });

  auto rollback_options = std::make_shared<MergeCommand>();
  CLI::App* rollback = app.add_subcommand(
      "rollback", "Restore the image a merge changed, from the undo image that merge --undo saved");
  rollback_options->rollback = true;
  rollback->add_option("UNDO", rollback_options->child, "The undo image written by troy merge --undo")->required();
  rollback->add_flag("--remove", rollback_options->remove, "Delete the undo image once rolled back");
  rollback->add_option("--parent", rollback_options->parents,
                       "The image the merge changed, when UNDO's locators no longer find it; its id is verified")
      ->allow_extra_args(false);
  add_merge_options(*rollback, *rollback_options, "the undo image");
  rollback->footer("The image that was merged (troy merge CHILD --undo UNDO) is re-linked to the restored image when it "
                   "is\nfound beside UNDO or that image: it then reads as it did before the merge.");
  rollback->callback([rollback_options, &exit_code, &console] { exit_code = run_merge(*rollback_options, console); });
}

}  // namespace troy::cli
