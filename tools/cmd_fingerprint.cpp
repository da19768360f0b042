// troy fingerprint IMAGE -o FILE: the hashes `troy apply --base-hashes` needs
// to verify a disk against a delta's base when the base image is not at hand
// (the boot payload downloads only the delta and this file).
// troy fingerprint --check FILE DISK: what DISK holds under the delta, by
// those hashes alone: how the boot payload tells which version a disk holds.
#include <fcntl.h>

#include <chrono>

#include <fmt/format.h>

#include "command_report.h"
#include "common.h"
#include "fingerprint.h"
#include "image_output.h"
#include "io.h"
#include "output.h"
#include "output_name.h"
#include "progress.h"
#include "read_ahead.h"
#include "text.h"

namespace troy::cli {
namespace {

struct FingerprintOptions {
  std::string path;  // the image, or with --check the disk
  std::string output;
  std::string check;  // a fingerprint file: classify `path` instead of writing one
  bool overwrite = false;
  ReadOptions read;
  ReportOptions report;
};

Result<size_t> write_fingerprint(const FingerprintOptions& options, const Console& console) {
  Diagnostics diagnostics;
  auto chain = open_chain(options.path, chain_options(options.read, diagnostics));
  print_warnings(diagnostics, console);
  if (!chain) return chain.error();
  TROY_ASSIGN(fingerprint, make_fingerprint(*chain));
  TROY_ASSIGN(out, OutputFile::create(options.output, options.overwrite, chain_paths(*chain)));
  const std::string text = serialize(fingerprint);
  TROY_TRY(out.write_at(0, std::as_bytes(std::span(text))));
  TROY_TRY(out.commit());
  return fingerprint.pieces.size();
}

int run_write(const FingerprintOptions& options, const Console& console, CommandReport& report) {
  Json& json = report.json();
  json["image"] = options.path;
  json["output"] = options.output;
  const auto started = std::chrono::steady_clock::now();
  auto pieces = write_fingerprint(options, console);
  if (!pieces) return report.fail(pieces.error());
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  json["pieces"] = *pieces;
  json["duration_seconds"] = json_seconds(seconds);
  report.summary(fmt::format("fingerprinted {} to {}: {}, {}", options.path, options.output,
                             count_of(*pieces, "piece"), short_duration(seconds)));
  return kExitOk;
}

int run_check(const FingerprintOptions& options, const Console& console, CommandReport& report) {
  Json& json = report.json();
  json["disk"] = options.path;
  json["fingerprint"] = options.check;
  auto fingerprint = read_fingerprint(options.check);
  if (!fingerprint) return report.fail(fingerprint.error());
  auto check = check_disk(*fingerprint, options.path, console);
  if (!check) return report.fail(check.error());
  // The one word scripts read; with --json it is the object's "state".
  if (!report.options().json) fmt::print("{}\n", disk_state_name(check->state));
  json["image_id"] = fingerprint->image_id;
  json["state"] = disk_state_name(check->state);
  json["description"] = describe(*check);
  report.summary(fmt::format("{} under the delta {}: {}", options.path, fingerprint->image_id, describe(*check)));
  return kExitOk;
}

}  // namespace

void register_fingerprint(CLI::App& app, int& exit_code, const Console& console) {
  auto options = std::make_shared<FingerprintOptions>();
  CLI::App* command = app.add_subcommand(
      "fingerprint",
      "Write the hashes of a delta's base and new content, for `troy apply --base-hashes` where only the delta "
      "travels; or, with --check, tell what a disk holds under the delta");
  command->add_option("IMAGE", options->path,
                      "The differencing image (its parent chain must be at hand); with --check, the disk or raw file "
                      "to examine (read only)")
      ->required();
  auto out = std::make_shared<OutputName>(OutputName{"fingerprint", "FILE", "", ""});
  auto* output = add_output_name(*command, *out, "The fingerprint file to write");
  command->add_option("--check", options->check,
                      "A fingerprint: print what the disk holds under its delta, one word: new, base, partial (an "
                      "interrupted apply) or foreign; writes nothing")
      ->excludes(output);
  command->add_flag("--overwrite", options->overwrite, "Replace the output if it exists");
  add_read_options(*command, options->read);
  add_report_options(*command, options->report);
  command->callback([options, out, &exit_code, &console] {
    CommandReport report("fingerprint", options->report, console);
    if (!options->check.empty() && !out->positional.empty()) {
      exit_code = report.fail(Error{fmt::format("fingerprint --check FILE DISK writes nothing, but {} was given after DISK",
                                         out->positional)});
      exit_code = report.finish(exit_code);
      return;
    }
    if (options->check.empty()) {
      auto named = chosen_output(*out);
      if (!named) {
        exit_code = report.finish(report.fail(Error{named.error().message + ", or --check FILE DISK to examine a disk"}));
        return;
      }
      options->output = *named;
    }
    exit_code = report.finish(options->check.empty() ? run_write(*options, console, report)
                                                     : run_check(*options, console, report));
  });
}

}  // namespace troy::cli
