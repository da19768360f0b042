// troy apply IMAGE TARGET: brings a disk (a block device or a raw file) to
// an image's content: by default only what the top layer of a differencing
// image changes (after checking that the disk holds its base), the layers
// above an ancestor with --since, or the whole disk with --full. Resumable
// after a kill or power loss; see docs/apply.md. The engine is deploy/apply.h;
// this file holds the options, the confirmation and the summary.
#include <unistd.h>

#include <chrono>
#include <iostream>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "apply.h"
#include "buffers.h"
#include "http_source.h"
#include "command_report.h"
#include "common.h"
#include "output.h"
#include "text.h"

namespace troy::cli {
namespace {

struct ApplyOptions {
  ApplyRequest request;
  std::string index;  // the chunk index of an IMAGE given as a URL
  bool yes = false;
  std::string report;
  ReportOptions json;  // --json, --stats
};

Result<void> confirm(const ApplyOptions& options, const Target& target, uint64_t bytes) {
  if (!target.is_block_device() || options.yes) return success();
  if (::isatty(STDIN_FILENO) != 1)
    return Error{fmt::format("{}: is a block device and there is no terminal to confirm on; give --yes to write to it",
                             target.path())};
  fmt::print(stderr, "troy: {}: {}\ntroy: write up to {} of {} onto it? Type yes to continue: ", target.path(),
             target.description(), human_bytes(bytes), options.request.image);
  std::string answer;
  std::getline(std::cin, answer);
  if (answer != "yes") return Error{fmt::format("{}: not confirmed; nothing was written", target.path())};
  return success();
}

// --report FILE: the object --json prints, kept in a file.
Result<void> write_report(const ApplyOptions& options, const Json& object) {
  const std::string json = json_line(object) + "\n";
  TROY_ASSIGN(out, OutputFile::create(options.report, true, {options.request.image, options.request.target}));
  TROY_TRY(out.write_at(0, std::as_bytes(std::span(json))));
  return out.commit();
}

// IMAGE as an http(s) URL: read by Range requests, every piece checked
// against --index before it is used (docs/streaming.md).
Result<std::unique_ptr<HttpRangeSource>> open_remote(const ApplyOptions& options) {
  const std::string& url = options.request.image;
  if (options.index.empty())
    return Error{fmt::format("{}: an image read over HTTP needs --index FILE|URL, its chunk index (troy publish writes "
                             "it beside the delta as versions/NAME.vhd.index), so that every piece is verified before "
                             "it is written",
                             url)};
  TROY_ASSIGN(index, load_chunk_index(options.index));
  return open_remote_image(url, piece_table(index, options.index));
}

int run_apply(ApplyOptions options, const Console& console, CommandReport& report) {
  const auto started = std::chrono::steady_clock::now();
  ApplyRequest& request = options.request;
  request.console = console;
  std::unique_ptr<HttpRangeSource> remote;
  if (request.image == "-") request.image = "/dev/stdin";  // refused when a pipe (deploy/apply.cpp refuse_pipe)
  if (is_http_url(request.image)) {
    auto opened = open_remote(options);
    if (!opened) return report.fail(opened.error());
    remote = std::move(*opened);
    request.image_source = remote.get();
  } else if (!options.index.empty()) {
    return report.fail(Error{fmt::format("--index {}: only for an IMAGE given as an http(s) URL", options.index)});
  }
  ApplyOutcome outcome;
  // Where the parents were found, before the target is read or written:
  // the base check reads them, so a wrong copy must show before it counts.
  request.confirm = [&options, &outcome, &console](const Target& target, uint64_t bytes) {
    for (const std::string& line : outcome.parents) console.say("{}", line);
    return confirm(options, target, bytes);
  };
  Diagnostics diagnostics;
  auto applied = apply_image(request, outcome, diagnostics);
  print_warnings(diagnostics, console);
  std::string error;
  if (!applied) {
    error = applied.error().message;
    if (outcome.stats.writing_started) error += "; the target is partly updated: run the same command again to finish";
  } else if (outcome.verify_failed) {
    error = fmt::format("{}: --verify: {}: the target does not read back as the image", request.target,
                        outcome.verification);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const ApplyStats& stats = outcome.stats;
  Json& json = report.json();
  // The engine's report (what the lab's reports carry), plus the fields
  // every command's --json has.
  const nlohmann::json engine = apply_report(request, outcome, seconds, error);
  for (const auto& [key, value] : engine.items())
    if (key != "error") json[key] = Json(value);
  json["bytes_skipped"] = stats.bytes_skipped;
  if (remote) json["bytes_fetched"] = remote->stats().bytes_fetched;
  json["bytes_per_second"] = bytes_per_second(stats.bytes_written, seconds);
  if (!error.empty()) json["error"] = error;
  if (!options.report.empty())
    if (auto reported = write_report(options, json); !reported) fail(reported.error());
  if (!applied) return report.fail(Error{error});
  report.summary(fmt::format("applied {} to {}: {} written, {}, {}{}", request.image, request.target,
                             short_bytes(static_cast<double>(stats.bytes_written)), short_duration(seconds),
                             short_rate(stats.bytes_written, seconds),
                             request.verify && !outcome.verify_failed ? ", verified" : ""));
  if (outcome.verify_failed) {
    report.fail(Error{error});
    return kExitProblems;
  }
  return kExitOk;
}

}  // namespace

void register_apply(CLI::App& app, int& exit_code, const Console& console) {
  auto options = std::make_shared<ApplyOptions>();
  CLI::App* command = app.add_subcommand(
      "apply", "Bring a disk (block device or raw file) to an image's content: the delta of a differencing image "
               "(after checking the disk holds its base), or the whole disk with --full; resumable");
  command->add_option("IMAGE", options->request.image,
                      "The image (a differencing image for a delta): a file, or an http(s) URL read piece by piece "
                      "with --index")
      ->required();
  command->add_option("--index", options->index,
                      "The chunk index (FILE or URL) of an IMAGE given as a URL: each piece read is checked against "
                      "it before it is used");
  command->add_option("TARGET", options->request.target, "Block device or raw file to write")->required();
  command->add_flag("--full", options->request.full, "Write the whole resolved disk (zeros where no layer holds data)");
  command->add_option("--since", options->request.since,
                      "An ancestor image of IMAGE's chain: write everything the layers above it change");
  command->add_option("--base-hashes", options->request.base_hashes,
                      "A fingerprint of IMAGE (troy fingerprint): checks the base when the parent is not at hand");
  command->add_flag("--no-verify-base", options->request.no_verify_base,
                    "Do not check that TARGET holds the delta's base (dangerous: a wrong disk is destroyed)");
  command->add_flag("-y,--yes", options->yes, "Write to a block device without asking");
  command->add_flag("--verify", options->request.verify, "Re-read every extent after writing and compare it with the image");
  command->add_option("--exclude", options->request.excludes, "OFFSET:LENGTH of the disk to leave untouched (repeatable; units: 20G:10G)")
      ->allow_extra_args(false);
  command->add_option("--keep-partition", options->request.keep_partitions,
                      "Leave partition N (of the image's MBR or GPT, numbered as Linux does) untouched (repeatable)")
      ->allow_extra_args(false);
  command->add_option("--journal", options->request.journal,
                      "Progress journal file (default: .TARGET.troy-apply beside a file, /var/lib/troy/apply/ for a device)");
  command->add_option("--report", options->report, "Write a JSON report of the run to this file");
  add_read_options(*command, options->request.read);
  command->get_option("--full")->excludes(command->get_option("--since"));
  add_report_options(*command, options->json);
  command->callback([options, &exit_code, &console] {
    CommandReport report("apply", options->json, console);
    exit_code = report.finish(run_apply(*options, console, report));
  });
}

}  // namespace troy::cli
