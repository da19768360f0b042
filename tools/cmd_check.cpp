// troy check IMAGE: validates every structure of an image and its chain.
// Exit 0 clean, 1 problems found, 2 cannot read.
#include <fmt/format.h>

#include "chain.h"
#include "common.h"
#include "image.h"

namespace troy::cli {
namespace {

struct CheckOptions {
  std::string image;
  ReadOptions read;
};

int run_check(const CheckOptions& options) {
  // First every structure of the image itself, collecting all problems.
  Diagnostics collected;
  collected.collect_problems = true;
  ChainOptions chain_opts = chain_options(options.read, collected);
  auto top = open_layer(options.image, chain_opts.open);
  if (!top) {
    for (const std::string& problem : collected.problems) fmt::print("{}\n", problem);
    return fail(top.error());
  }
  // Then the chain, each parent checked the same way.
  Chain chain(std::move(*top));
  const auto parents = chain.open_parents(chain_opts);
  for (const std::string& warning : collected.warnings) fmt::print(stderr, "troy: warning: {}\n", warning);
  for (const std::string& problem : collected.problems) fmt::print("{}\n", problem);
  size_t problems = collected.problems.size();
  if (!parents) {
    fmt::print("{}\n", parents.error().message);
    problems++;
  }
  if (problems != 0) {
    fmt::print(stderr, "troy: {}: {} problem(s) found\n", options.image, problems);
    return kExitProblems;
  }
  fmt::print(stderr, "troy: {}: no problems found ({} layer(s) checked)\n", options.image, chain.layers().size());
  return kExitOk;
}

}  // namespace

void register_check(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<CheckOptions>();
  CLI::App* command = app.add_subcommand(
      "check", "Validate every structure of an image and its chain; one line per problem "
               "(exit 0 clean, 1 problems found, 2 cannot read)");
  command->add_option("IMAGE", options->image, "VHD or VHDX image (the top of a chain)")->required();
  add_read_options(*command, options->read);
  command->callback([options, &exit_code] { exit_code = run_check(*options); });
}

}  // namespace troy::cli
