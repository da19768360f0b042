// troy check IMAGE: validates every structure of an image and its chain.
// Exit 0 clean, 1 problems found, 2 cannot read.
#include <fmt/format.h>

#include "chain.h"
#include "command_report.h"
#include "common.h"
#include "image.h"
#include "line_summary.h"
#include "text.h"
#include "vhdx.h"

namespace troy::cli {
namespace {

struct CheckOptions {
  std::string image;
  bool replay_log = false;
  ReadOptions read;
  ReportOptions report;
};

// --replay-log: writes a dirty VHDX log into the file, as Hyper-V does when
// it opens the file, so other tools (qemu-img refuses dirty files opened
// read-only, libvhdi ignores the log) read it right afterwards.
Result<void> replay_log(const std::string& image) {
  TROY_ASSIGN(done, vhdx::replay_log_in_place(image));
  if (done.replayed)
    fmt::print(stderr, "troy: {}: replayed {} log entr{} (sequence {}..{}, {} writes) into the file\n", printable(image),
               done.entries, done.entries == 1 ? "y" : "ies", done.first_sequence, done.last_sequence, done.writes);
  else if (done.headers_rewritten)
    fmt::print(stderr, "troy: {}: the log held no valid entries; headers rewritten with an empty log\n", printable(image));
  else
    fmt::print(stderr, "troy: {}: the log needs no replay; file unchanged\n", printable(image));
  return success();
}

// One line per problem on stdout, or with --json in the object only; after
// the first 20 of a kind (a damaged table gives one per entry), a count.
// The object keeps every count and the lines shown.
void print_problems(const std::vector<std::string>& problems, CommandReport& report) {
  const LineSummary summary = summarize_lines(problems);
  report.json()["problems"] = summary.shown;
  report.json()["problem_count"] = summary.total;
  report.json()["problems_not_listed"] = summary.omitted_count();
  if (report.options().json) return;
  for (const std::string& problem : summary.shown) fmt::print("{}\n", printable(problem));
  for (const std::string& more : summary.omitted) fmt::print("{}\n", printable(more));
}

// Warnings, bounded the same way.
void print_check_warnings(const std::vector<std::string>& warnings, const Console& console, Json& json) {
  const LineSummary summary = summarize_lines(warnings);
  for (const std::string& warning : summary.shown) console.warn("{}", warning);
  for (const std::string& more : summary.omitted) console.warn("{}", more);
  json["warnings"] = summary.shown;
  json["warning_count"] = summary.total;
}

// A disk of 0 bytes opens (neither format forbids the field's value) but
// holds no sector: nothing could boot from it, convert refuses it.
void check_virtual_size(const Layer& top, Diagnostics& collected) {
  if (top.virtual_size() == 0)
    collected.problems.push_back(fmt::format("{}: virtual size is 0 bytes ({} field): the disk holds nothing",
                                             top.path(), virtual_size_field(top)));
}

int run_check(const CheckOptions& options, const Console& console, CommandReport& report) {
  Json& json = report.json();
  json["image"] = options.image;
  json["problems"] = Json::array();
  if (options.replay_log) {
    const auto replayed = replay_log(options.image);
    if (!replayed) return report.fail(replayed.error());
  }
  // First every structure of the image itself, collecting all problems.
  Diagnostics collected;
  collected.collect_problems = true;
  ChainOptions chain_opts = chain_options(options.read, collected);
  auto top = open_layer(options.image, chain_opts.open);
  if (!top) {
    print_problems(collected.problems, report);
    return report.fail(top.error());
  }
  // Then the chain, each parent checked the same way.
  check_virtual_size(**top, collected);
  Chain chain(std::move(*top));
  const auto parents = chain.open_parents(chain_opts);
  print_check_warnings(collected.warnings, console, json);
  if (!parents) collected.problems.push_back(parents.error().message);
  print_problems(collected.problems, report);
  const size_t problems = collected.problems.size();
  json["layers_checked"] = chain.layers().size();
  if (problems != 0) {
    report.summary(fmt::format("{}: {} found", options.image, count_of(problems, "problem")));
    return kExitProblems;
  }
  report.summary(fmt::format("{}: no problems found, {} checked", options.image,
                             count_of(chain.layers().size(), "layer")));
  return kExitOk;
}

}  // namespace

void register_check(CLI::App& app, int& exit_code, const Console& console) {
  auto options = std::make_shared<CheckOptions>();
  CLI::App* command = app.add_subcommand(
      "check", "Validate every structure of an image and its chain; one line per problem "
               "(exit 0 clean, 1 problems found, 2 cannot read)");
  command->add_option("IMAGE", options->image, "VHD or VHDX image (the top of a chain)")->required();
  command->add_flag("--replay-log", options->replay_log,
                    "VHDX: first replay a dirty log into IMAGE itself (this writes to IMAGE, as Hyper-V does on "
                    "open); without it the log is replayed in memory only");
  add_read_options(*command, options->read);
  add_report_options(*command, options->report);
  command->callback([options, &exit_code, &console] {
    CommandReport report("check", options->report, console);
    exit_code = report.finish(run_check(*options, console, report));
  });
}

}  // namespace troy::cli
