// The end of every command: its summary line, `--stats` and `--json`
// (conventions in json_output.h). A command fills one CommandReport as it
// runs, records its error in it, and lets finish() print what was asked.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "console.h"
#include "json_output.h"
#include "progress.h"  // short_bytes for the summary lines
#include "result.h"

namespace troy::cli {

struct ReportOptions {
  bool json = false;
  bool stats = false;
};

// --json, and --stats unless the command has no summary to detail (info).
void add_report_options(CLI::App& command, ReportOptions& options, bool stats = true);

class CommandReport {
 public:
  CommandReport(const std::string& command, const ReportOptions& options, const Console& console);

  // The object --json prints: set the command's fields here.
  Json& json() { return object_; }
  const ReportOptions& options() const { return options_; }
  // The short line printed at the end (without "troy: "); none with -q.
  void summary(std::string line) { summary_ = std::move(line); }
  // Prints "troy: error: MESSAGE" as fail() does, keeps it for --json, and
  // returns kExitError.
  int fail(const Error& error);
  // Prints the summary, the --stats lines and the --json object; returns
  // `exit_code`.
  int finish(int exit_code);

 private:
  ReportOptions options_;
  const Console& console_;
  Json object_;
  std::string summary_;
};

}  // namespace troy::cli
