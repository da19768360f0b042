// troy: keeps the Windows disks of a computer lab up to date from Linux.
// One binary with git-style subcommands; each lives in its own file.
#include <cerrno>
#include <cstdio>
#include <cstring>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "common.h"
#include "parse_error.h"

namespace troy::cli {
// troy sync (cmd_sync.cpp), declared here rather than in the shared common.h.
void register_sync(CLI::App& app, int& exit_code, const Console& console);
// troy lab multicast (cmd_delivery.cpp).
void register_delivery(CLI::App& app, int& exit_code, const Console& console);
// troy vhdboot (cmd_vhdboot.cpp): native-VHD-boot machines.
void register_vhdboot(CLI::App& app, int& exit_code, const Console& console);
// troy checkin (cmd_checkin.cpp): a teacher machine uploads its changes.
void register_checkin(CLI::App& app, int& exit_code, const Console& console);
// troy lab versions|rollback|squash (cmd_lab_versions.cpp), under `troy lab`.
void register_lab_versions(CLI::App& app, int& exit_code, const Console& console);
}  // namespace troy::cli

namespace {

// Output lost on a full disk or a closed pipe is an error, not a success:
// every command writes standard output through stdio, so one check covers all.
int check_stdout(int exit_code) {
  errno = 0;
  if (std::fflush(stdout) == 0 && std::ferror(stdout) == 0) return exit_code;
  const int error = errno;
  fmt::print(stderr, "troy: error: standard output: {}\n", error != 0 ? std::strerror(error) : "write error");
  return troy::cli::kExitError;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"troy: keeps a lab's Windows disks up to date from Linux.\n"
               "Reads, checks, converts and creates VHD and VHDX images and their parent chains (.vhd, .vhdx,\n"
               ".avhdx): capture a disk as a base image, compute a teacher's change as a differencing child,\n"
               "merge a child into its parent in place (crash-safe, with an undo image to roll back), or\n"
               "write only an image's changed sectors onto a machine's disk (apply).\n"
               "Exit codes: 0 success, 1 problems found (check), 2 error (nothing was changed)."};
  app.require_subcommand(1);
  app.set_version_flag("-V,--version", "troy 0.1.0");
  int exit_code = troy::cli::kExitOk;
  // Filled by the parse (the flags) and now (the environment); every command
  // reads it only in its callback, after the parse.
  troy::cli::Console console = troy::cli::Console::detect();
  app.add_flag("-q,--quiet", console.quiet, "Print errors only (for cron and scripts)");
  app.add_flag("-p,--progress", console.force_progress, "Show progress even when standard error is not a terminal");
  // -q and -p anywhere: `troy info -q x` as well as `troy -q info x`. Every
  // subcommand added below inherits this and hands options it does not know
  // up to its parent.
  app.fallthrough();
  troy::cli::register_info(app, exit_code, console);
  troy::cli::register_check(app, exit_code, console);
  troy::cli::register_convert(app, exit_code, console);
  troy::cli::register_create(app, exit_code, console);
  troy::cli::register_capture(app, exit_code, console);
  troy::cli::register_diff(app, exit_code, console);
  troy::cli::register_merge(app, exit_code, console);
  troy::cli::register_relink(app, exit_code, console);
  troy::cli::register_apply(app, exit_code, console);
  troy::cli::register_fingerprint(app, exit_code, console);
  troy::cli::register_publish(app, exit_code, console);
  troy::cli::register_verify_manifest(app, exit_code, console);
  troy::cli::register_lab(app, exit_code, console);
  troy::cli::register_lab_versions(app, exit_code, console);
  troy::cli::register_update(app, exit_code, console);
  troy::cli::register_sync(app, exit_code, console);
  troy::cli::register_delivery(app, exit_code, console);
  troy::cli::register_vhdboot(app, exit_code, console);
  troy::cli::register_checkin(app, exit_code, console);
  troy::cli::register_help(app, exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // One line, as every troy error (CLI11's own names neither the unknown
    // word nor a way out).
    const std::vector<std::string> args(argv + (argc > 0 ? 1 : 0), argv + argc);
    fmt::print(stderr, "troy: error: {}\n", troy::cli::parse_error_message(app, args, e));
    return troy::cli::kExitError;
  }
  return check_stdout(exit_code);
}
