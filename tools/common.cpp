#include "common.h"

#include <fmt/format.h>

#include "line_summary.h"
#include "text.h"

namespace troy::cli {

void add_read_options(CLI::App& command, ReadOptions& options) {
  command.add_option("--parent", options.parents,
                     "Parent image file; repeat for deeper chains (the image's parent first). "
                     "Default: found from the image's parent locators")
      ->allow_extra_args(false);  // one file per --parent, so positionals may follow
  command.add_flag("--force", options.force, "Read even when a parent's id does not match the one the child records, or the child is "
                   "smaller than its parent");
  command.add_flag("--ignore-checksums", options.ignore_checksums, "Read structures whose checksum is wrong");
}

void print_warnings(Diagnostics& diagnostics, const Console& console) {
  const LineSummary summary = summarize_lines(diagnostics.warnings);
  for (const std::string& warning : summary.shown) console.warn("{}", warning);
  for (const std::string& more : summary.omitted) console.warn("{}", more);
  diagnostics.warnings.clear();
}

std::string virtual_size_field(const Layer& layer) {
  return layer.info().format == "vhdx" ? "Virtual Disk Size" : "Current Size";
}

int fail(const Error& error) {
  fmt::print(stderr, "troy: error: {}\n", printable(error.message));  // one line, whatever an image named
  return kExitError;
}

}  // namespace troy::cli
