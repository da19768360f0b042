#include "common.h"

#include <fmt/format.h>

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
  for (const std::string& warning : diagnostics.warnings) console.warn("{}", warning);
  diagnostics.warnings.clear();
}

int fail(const Error& error) {
  fmt::print(stderr, "troy: error: {}\n", error.message);
  return kExitError;
}

}  // namespace troy::cli
