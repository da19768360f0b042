// troy vhdboot BASE CHILD [DELTA...]: a native-VHD-boot machine's disk
// brought up to date (lab/vhdboot.h, docs/vhdboot.md): each DELTA that BASE
// does not hold yet merged into it, crash-safe, then CHILD replaced by a
// fresh empty child of BASE unless it is one already. With --partition, BASE
// and CHILD are paths on that NTFS partition, which troy mounts with ntfs-3g
// and unmounts. What the boot payload does; this is the same by hand.
#include <filesystem>

#include <fmt/format.h>

#include "command_report.h"
#include "common.h"
#include "vhdboot.h"

namespace troy::cli {
namespace {

struct VhdBootOptions {
  std::string base;
  std::string child;
  std::vector<std::string> deltas;
  std::string partition;
  std::string mount_dir = "/run/troy/ntfs";
  bool keep_child = false;
  ReportOptions report;
};

Result<VhdBootOutcome> run_on(const VhdBootOptions& options, const std::string& root, const Console& console) {
  VhdBootJob job;
  job.base = root.empty() ? options.base : root + "/" + options.base;
  job.child = root.empty() ? options.child : root + "/" + options.child;
  job.deltas = options.deltas;
  job.keep_child = options.keep_child;
  return run_vhdboot(job, console);
}

Result<VhdBootOutcome> run(const VhdBootOptions& options, const Console& console) {
  if (options.partition.empty()) return run_on(options, "", console);
  TROY_TRY(check_partition_path(options.base, "BASE"));
  TROY_TRY(check_partition_path(options.child, "CHILD"));
  TROY_TRY(mount_ntfs(options.partition, options.mount_dir));
  auto outcome = run_on(options, options.mount_dir, console);
  auto unmounted = unmount_ntfs(options.mount_dir);
  if (!outcome) return outcome;
  if (!unmounted) return unmounted.error();
  return outcome;
}

std::string summary(const VhdBootOptions& options, const VhdBootOutcome& outcome) {
  std::string text = outcome.merged.empty()
                         ? fmt::format("{} already holds every delta given", options.base)
                         : fmt::format("merged {} into {} ({} bytes written)", fmt::join(outcome.merged, ", "),
                                       options.base, outcome.bytes_written);
  if (outcome.child_reset) text += fmt::format("; {} is a fresh empty child of it", options.child);
  else if (outcome.child_kept) text += fmt::format("; {} kept (--keep-child)", options.child);
  else text += fmt::format("; {} was already fresh: nothing written to it", options.child);
  return text;
}

}  // namespace

void register_vhdboot(CLI::App& app, int& exit_code, const Console& console) {
  auto options = std::make_shared<VhdBootOptions>();
  CLI::App* command = app.add_subcommand(
      "vhdboot",
      "Native-VHD-boot machine: merge the deltas BASE lacks into it (crash-safe) and give the student a fresh "
      "empty CHILD of BASE (docs/vhdboot.md)");
  command->add_option("BASE", options->base, "The machine's base image (a VHDX or VHD Windows boots through CHILD)")->required();
  command->add_option("CHILD", options->child, "The student's differencing child, replaced by a fresh one")->required();
  command->add_option("DELTA", options->deltas,
                      "The published deltas, in version order (those BASE already holds are skipped)");
  command->add_option("--partition", options->partition,
                      "An NTFS partition (/dev/sda2) to mount with ntfs-3g; BASE and CHILD are then paths on it");
  command->add_option("--mount-dir", options->mount_dir, "Where --partition is mounted (default /run/troy/ntfs)");
  command->add_flag("--keep-child", options->keep_child,
                    "Keep CHILD (the student's writes) when BASE did not change");
  add_report_options(*command, options->report);
  command->callback([options, &exit_code, &console] {
    CommandReport report("vhdboot", options->report, console);
    auto outcome = run(*options, console);
    if (!outcome) {
      exit_code = report.finish(report.fail(outcome.error()));
      return;
    }
    Json& json = report.json();
    json["base"] = options->base;
    json["child"] = options->child;
    json["merged"] = outcome->merged;
    json["skipped"] = outcome->skipped;
    json["child_reset"] = outcome->child_reset;
    json["child_kept"] = outcome->child_kept;
    json["bytes_written"] = outcome->bytes_written;
    report.summary(summary(*options, *outcome));
    exit_code = report.finish(kExitOk);
  });
}

}  // namespace troy::cli
