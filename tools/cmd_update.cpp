// troy update --server URL: brings this machine's lab disk to the newest
// published version (lab/update.h). The boot payload's /init runs it at
// power-on; a lab admin can run it by hand from any Linux (a live USB stick
// on a machine that cannot boot from the network).
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <memory>

#include <fmt/format.h>

#include "command_report.h"
#include "common.h"
#include "files.h"
#include "text.h"
#include "update.h"

namespace troy::cli {
namespace {

struct UpdateCommand {
  UpdateOptions update;
  std::string then;  // the kernel command line's troy.then=, as given
  std::string cmdline;  // /proc/cmdline in the boot payload
  unsigned error_wait = 0;
  std::string after_file;
  std::string payload_file;
  std::string report;
  bool no_report = false;
  bool yes = false;
  ReportOptions json;  // --json
};

const char* kRule = "==================================================================";

// The disk, the plan, and a "yes" typed at the keyboard, unless --yes.
Result<void> confirm(const UpdateCommand& command, const DiskInfo& disk, const std::string& plan) {
  if (command.yes) return success();
  if (::isatty(STDIN_FILENO) != 1)
    return Error{fmt::format("{}/{}: there is no terminal to confirm on; give --yes to write to it",
                             command.update.dev, disk.name)};
  fmt::print(stderr, "troy: {}/{}: {}, model '{}', serial '{}'\ntroy: {}. Write onto this disk? Type yes to continue: ",
             command.update.dev, printable(disk.name), human_bytes(disk.size), printable(disk.model),
             printable(disk.serial), printable(plan));
  std::string answer;
  std::getline(std::cin, answer);
  if (answer != "yes") return Error{fmt::format("{}/{}: not confirmed; nothing was written", command.update.dev, disk.name)};
  return success();
}

std::string disk_state(const UpdateOutcome& outcome) {
  if (outcome.held == "incomplete") return "partly updated: running troy update again (the next network boot) completes it";
  if (!outcome.written) return outcome.held.empty() ? "unchanged" : fmt::format("unchanged, holds version {}", outcome.held);
  return fmt::format("holds version {}", outcome.held);
}

// The last lines on the screen: what happened, in a frame the eye finds.
// With -q only an error is framed.
void print_banner(const UpdateOutcome& outcome, const Console& console) {
  if (outcome.ok && !console.speaks()) return;
  fmt::print(stderr, "\n{}\n", kRule);
  if (outcome.ok) {
    fmt::print(stderr, " TROY: OK. {}\n", outcome.message);
  } else {
    fmt::print(stderr, " TROY: ERROR\n {}\n Disk {}: {}.\n", outcome.message,
               outcome.disk.empty() ? "(none chosen)" : outcome.disk, disk_state(outcome));
  }
  fmt::print(stderr, "{}\n", kRule);
}

Result<void> write_text_file(const std::string& path, const std::string& text) {
  std::ofstream file(path, std::ios::trunc);
  file << text;
  file.close();
  if (!file) return Error{fmt::format("{}: cannot be written", path)};
  return success();
}

// The boot payload's settings from the kernel command line: the server, and
// what to do after; the options given explicitly win.
Result<void> read_kernel_settings(UpdateCommand& command, const Console& console) {
  auto read = read_small_file(command.cmdline, 64 << 10, "a kernel command line");
  if (!read) return read.error();
  const std::string text = read->substr(0, read->find('\n'));
  const KernelSettings settings = kernel_settings(text);
  for (const std::string& ignored : settings.ignored) console.warn("ignored {}", ignored);
  if (command.update.server.empty()) command.update.server = settings.server;
  if (command.then.empty()) command.then = settings.then;
  command.error_wait = settings.wait.value_or(60);
  if (settings.keep_child) command.update.keep_child = true;
  if (command.update.server.empty())
    return Error{fmt::format("{}: no troy.server=URL (the lab's boot script sets it)", command.cmdline)};
  return success();
}

int run(UpdateCommand& command, const Console& console, CommandReport& report) {
  UpdateOptions& options = command.update;
  options.console = console;
  if (!command.cmdline.empty())
    if (auto read = read_kernel_settings(command, console); !read) {
      print_banner(UpdateOutcome{false, read.error().message, "", "", false, "reboot", {}}, console);
      ::sleep(command.error_wait);
      return report.fail(read.error());
    }
  if (options.server.empty())
    return report.fail(Error{"--server URL (or --cmdline FILE with troy.server=) is required"});
  if (!command.then.empty() && command.then != "reboot" && command.then != "poweroff")
    console.warn("troy.then={} ignored: only reboot or poweroff (the manifest decides the rest)", command.then);
  options.requested_after = command.then;
  options.send_report = !command.no_report;
  if (!command.payload_file.empty()) {
    auto text = read_small_file(command.payload_file, 64 << 10, "the payload's description");
    if (!text) return report.fail(text.error());
    std::istringstream lines(*text);
    for (std::string line; std::getline(lines, line);) options.payload += (options.payload.empty() ? "" : "; ") + line;
  }
  options.confirm = [&command](const DiskInfo& disk, const std::string& plan) { return confirm(command, disk, plan); };
  const UpdateOutcome outcome = run_update(options, [&console](const std::string& line) { console.say("{}", line); });
  print_banner(outcome, console);
  // --json: the report the server receives, with the fields of every
  // command's --json; the banner above already showed the error.
  for (const auto& [key, value] : outcome.report.items()) report.json()[key] = Json(value);
  if (!outcome.ok) report.json()["error"] = outcome.message;
  const std::string json = outcome.report.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  if (!command.report.empty())
    if (auto written = write_text_file(command.report, json); !written) fail(written.error());
  if (!command.after_file.empty())
    if (auto written = write_text_file(command.after_file, outcome.after + "\n"); !written) fail(written.error());
  // On a classroom screen an error stays long enough to be read (troy.wait=),
  // unless the machine is to power off anyway (a night's rollout).
  if (!outcome.ok && outcome.after == "reboot" && command.error_wait > 0) ::sleep(command.error_wait);
  return outcome.ok ? kExitOk : kExitError;
}

}  // namespace

void register_update(CLI::App& app, int& exit_code, const Console& console) {
  auto command = std::make_shared<UpdateCommand>();
  UpdateOptions& options = command->update;
  CLI::App* sub = app.add_subcommand(
      "update",
      "Bring this machine's lab disk to the newest published version: verify the signed manifest, choose the disk by "
      "its rules, find the version the disk holds, fetch and check the deltas it lacks, apply them, report");
  sub->add_option("--server", options.server, "The lab server (http://HOST:PORT) or a served directory");
  sub->add_option("--cmdline", command->cmdline,
                  "Read troy.server=, troy.then=, troy.wait= and troy.child= from this file (the boot payload gives /proc/cmdline)");
  sub->add_option("--error-wait", command->error_wait, "Seconds an error stays on screen before the reboot");
  sub->add_option("--key", options.key, "The lab's public key (PEM)")->capture_default_str();
  sub->add_option("--disk", options.disk,
                  "Write the disk of this name (sda, nvme0n1) instead of the one the manifest's rules choose");
  sub->add_option("--work", options.work, "Folder for fingerprints and deltas while needed")->capture_default_str();
  sub->add_option("--machine", options.machine,
                  "This machine's MAC address in the report, how the server knows it (default: read from sysfs)");
  sub->add_option("--sysfs", options.sysfs, "Where sysfs is mounted (block/ and class/net/ are read)")
      ->capture_default_str();
  sub->add_option("--dev", options.dev, "Where the disks' device files are")->capture_default_str();
  sub->add_option("--then", command->then,
                  "reboot or poweroff: asked for by the kernel command line (troy.then=); the manifest may still "
                  "say poweroff");
  sub->add_option("--mount-dir", options.mount_dir,
                  "Native-VHD-boot labs: where the NTFS partition is mounted while it is worked on")
      ->capture_default_str();
  sub->add_flag("--keep-child", options.keep_child,
                "Native-VHD-boot labs: keep the student's child while the base does not change (troy.child=keep)");
  sub->add_option("--after-file", command->after_file, "Write what to do next (reboot or poweroff) to this file");
  sub->add_option("--payload-file", command->payload_file, "A file describing the boot payload, for the report");
  sub->add_option("--report", command->report, "Also write the JSON report to this file");
  sub->add_flag("--no-report", command->no_report, "Do not send the report to the server");
  add_report_options(*sub, command->json, false);
  sub->add_flag("-y,--yes", command->yes, "Write without asking");
  sub->callback([command, &exit_code, &console] {
    CommandReport report("update", command->json, console);
    exit_code = report.finish(run(*command, console, report));
  });
}

}  // namespace troy::cli
