#include "command_report.h"

#include <cstdio>

#include <fmt/format.h>

#include "common.h"
#include "text.h"

namespace troy::cli {

void add_report_options(CLI::App& command, ReportOptions& options, bool stats) {
  command.add_flag("--json", options.json, "Print the result as one JSON object on stdout (fields: see the README)");
  if (stats) command.add_flag("--stats", options.stats, "Print every count of the result on stderr, one 'name: value' a line");
}

CommandReport::CommandReport(const std::string& command, const ReportOptions& options, const Console& console)
    : options_(options), console_(console), object_{{"command", command}, {"error", nullptr}, {"lossy_paths", false}} {}

int CommandReport::fail(const Error& error) {
  object_["error"] = error.message;
  return cli::fail(error);
}

int CommandReport::finish(int exit_code) {
  if (!summary_.empty() && exit_code != kExitError) console_.say("{}", summary_);
  if (options_.stats && object_["error"].is_null()) {
    Json details = object_;
    for (const char* key : {"command", "error", "lossy_paths"}) details.erase(key);
    for (const std::string& line : stats_lines(details)) fmt::print(stderr, "{}\n", printable(line));
  }
  if (!options_.json) return exit_code;
  // A failed write (a full disk, a closed pipe) is reported by main, which
  // checks standard output once every command is done.
  const std::string line = json_line(object_) + "\n";
  std::fwrite(line.data(), 1, line.size(), stdout);
  return exit_code;
}

}  // namespace troy::cli
