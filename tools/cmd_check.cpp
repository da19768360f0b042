// troy check IMAGE: validates every structure of an image and its chain.
// Exit 0 clean, 1 problems found, 2 cannot read.
#include <fmt/format.h>

#include "chain.h"
#include "command_report.h"
#include "common.h"
#include "image.h"
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
    fmt::print(stderr, "troy: {}: replayed {} log entr{} (sequence {}..{}, {} writes) into the file\n", image,
               done.entries, done.entries == 1 ? "y" : "ies", done.first_sequence, done.last_sequence, done.writes);
  else if (done.headers_rewritten)
    fmt::print(stderr, "troy: {}: the log held no valid entries; headers rewritten with an empty log\n", image);
  else
    fmt::print(stderr, "troy: {}: the log needs no replay; file unchanged\n", image);
  return success();
}

// One line per problem on stdout, or with --json in the object only.
void print_problems(const std::vector<std::string>& problems, CommandReport& report) {
  for (const std::string& problem : problems) {
    report.json()["problems"].push_back(problem);
    if (!report.options().json) fmt::print("{}\n", problem);
  }
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
  Chain chain(std::move(*top));
  const auto parents = chain.open_parents(chain_opts);
  for (const std::string& warning : collected.warnings) console.warn("{}", warning);
  if (!parents) collected.problems.push_back(parents.error().message);
  print_problems(collected.problems, report);
  const size_t problems = collected.problems.size();
  json["layers_checked"] = chain.layers().size();
  json["warnings"] = collected.warnings;
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
