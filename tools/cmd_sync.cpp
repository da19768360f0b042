// troy sync INDEX TARGET --store STORE: brings a disk (a block device or a
// raw file), whatever it holds, to the content a chunk index describes,
// writing only the pieces that differ and fetching only those the disk does
// not hold elsewhere (deploy/sync.h). What the boot payload does for a blank,
// foreign or drifted disk; this is the same engine by hand.
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <iostream>

#include <fmt/format.h>

#include <filesystem>

#include "chunk_fetch.h"
#include "chunk_index.h"
#include "command_report.h"
#include "common.h"
#include "json_output.h"
#include "output.h"
#include "progress.h"
#include "server.h"
#include "sync_update.h"
#include "sync.h"

namespace troy::cli {
namespace {

struct SyncOptions {
  std::string index;
  std::string target;
  std::string store;
  bool yes = false;
  ReportOptions report;
};

Result<ChunkIndex> load_index(const std::string& location) {
  if (!is_http_location(location)) return read_chunk_index(location);
  TROY_ASSIGN(bytes, fetch_url(location, kMaxChunkIndexBytes));
  return parse_chunk_index(bytes, location);
}

Result<void> confirm(const SyncOptions& options, const ChunkIndex& index) {
  struct stat st {};
  if (::stat(options.target.c_str(), &st) != 0 || !S_ISBLK(st.st_mode) || options.yes) return success();
  if (::isatty(STDIN_FILENO) != 1)
    return Error{fmt::format("{}: is a block device and there is no terminal to confirm on; give --yes to write to it",
                             options.target)};
  fmt::print(stderr, "troy: bring the first {} of {} to the content of {}? Type yes to continue: ",
             short_bytes(static_cast<double>(index.total_size)), options.target, options.index);
  std::string answer;
  std::getline(std::cin, answer);
  if (answer != "yes") return Error{fmt::format("{}: not confirmed; nothing was written", options.target)};
  return success();
}

int run(const SyncOptions& options, const Console& console, CommandReport& report) {
  Json& json = report.json();
  json["index"] = options.index;
  json["target"] = options.target;
  json["store"] = options.store;
  const auto started = std::chrono::steady_clock::now();
  auto index = load_index(options.index);
  if (!index) return report.fail(index.error());
  auto store = open_chunk_store(options.store);
  if (!store) return report.fail(store.error());
  if (auto confirmed = confirm(options, *index); !confirmed) return report.fail(confirmed.error());
  auto disk = open_sync_disk(options.target);
  if (!disk) return report.fail(disk.error());
  SyncRequest request;
  request.console = console;
  auto stats = sync_disk(*index, **disk, **store, request);
  if (!stats) return report.fail(stats.error());
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  json["pieces"] = stats->pieces;
  json["pieces_kept"] = stats->kept;
  json["pieces_copied"] = stats->copied;
  json["pieces_zeroed"] = stats->zeroed;
  json["pieces_fetched"] = stats->fetched;
  json["bytes_read"] = stats->bytes_read;
  json["bytes_written"] = stats->bytes_written;
  json["bytes_fetched"] = stats->bytes_fetched;
  json["duration_seconds"] = json_seconds(seconds);
  report.summary(fmt::format("synced {} to {}: {}, {}", options.target, options.index, describe(*stats),
                             short_duration(seconds)));
  return kExitOk;
}

struct ReimageOptions {
  std::string served;
  std::string mac;
  bool clear = false;
};

// SERVED/reimage/MAC: the flag the payload reads (sync_update.h).
Result<std::string> set_reimage(const ReimageOptions& options) {
  const auto mac = normalize_mac(options.mac);
  if (!mac) return Error{fmt::format("'{}' is not a MAC address (aa:bb:cc:dd:ee:ff)", options.mac)};
  if (!std::filesystem::is_directory(options.served))
    return Error{fmt::format("{}: not a directory (the served directory)", options.served)};
  const std::string path = options.served + "/" + reimage_flag_path(*mac);
  if (options.clear) {
    std::error_code error;
    std::filesystem::remove(path, error);
    if (error) return Error{fmt::format("{}: cannot remove: {}", path, error.message())};
    return fmt::format("{} will no longer be reimaged ({} removed)", *mac, path);
  }
  std::filesystem::create_directories(options.served + "/reimage");
  TROY_ASSIGN(out, OutputFile::create(path, /*overwrite=*/true));
  const std::string text = "reimage\n";
  TROY_TRY(out.write_at(0, std::as_bytes(std::span(text))));
  TROY_TRY(out.commit());
  return fmt::format("{} syncs its whole disk to the newest version at each boot until troy lab reimage --clear ({})",
                     *mac, path);
}

void register_reimage(CLI::App& app, int& exit_code, const Console& console) {
  // Under `troy lab`, registered before this (main.cpp), kept out of the shared cmd_lab.cpp.
  const auto labs = app.get_subcommands([](CLI::App* sub) { return sub->get_name() == "lab"; });
  if (labs.empty()) return;
  CLI::App* lab = labs.front();
  auto options = std::make_shared<ReimageOptions>();
  CLI::App* command = lab->add_subcommand(
      "reimage", "Make a machine sync its whole disk to the newest version at its next boots, whatever the disk "
                 "holds (a served file reimage/MAC; --clear removes it)");
  command->add_option("MAC", options->mac, "The machine's MAC address, as its reports name it")->required();
  command->add_option("--dir", options->served, "The served directory")->required();
  command->add_flag("--clear", options->clear, "Remove the flag: the machine takes the delta path again");
  command->callback([options, &exit_code, &console] {
    auto done = set_reimage(*options);
    if (!done) {
      fmt::print(stderr, "troy: error: {}\n", printable(done.error().message));
      exit_code = kExitError;
      return;
    }
    console.say("{}", *done);
    exit_code = kExitOk;
  });
}

}  // namespace

void register_sync(CLI::App& app, int& exit_code, const Console& console) {
  auto options = std::make_shared<SyncOptions>();
  CLI::App* command = app.add_subcommand(
      "sync",
      "Bring a disk, whatever it holds (blank, another lab's image, a version changed since), to a published "
      "version's content: reads the disk, keeps what matches, reuses pieces found elsewhere on it, fetches the rest");
  command->add_option("INDEX", options->index,
                      "The version's chunk index: SERVED/versions/NAME.cidx, or its http:// URL (the payload takes "
                      "it from the signed manifest; by hand, make sure it is the lab's)")
      ->required();
  command->add_option("TARGET", options->target, "The disk (a block device) or a raw file; only the first "
                                                  "INDEX-size bytes are written")
      ->required();
  command->add_option("--store", options->store,
                      "Where the pieces are: the served directory (holding chunks/) or its http:// URL")
      ->required();
  command->add_flag("-y,--yes", options->yes, "Write to a block device without asking");
  add_report_options(*command, options->report);
  command->callback([options, &exit_code, &console] {
    CommandReport report("sync", options->report, console);
    exit_code = report.finish(run(*options, console, report));
  });
  register_reimage(app, exit_code, console);
}

}  // namespace troy::cli
