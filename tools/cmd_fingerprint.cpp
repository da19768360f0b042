// troy fingerprint IMAGE -o FILE: the hashes `troy apply --base-hashes` needs
// to verify a disk against a delta's base when the base image is not at hand
// (the boot payload downloads only the delta and this file).
#include <chrono>

#include <fmt/format.h>

#include "common.h"
#include "fingerprint.h"
#include "image_output.h"
#include "output.h"
#include "text.h"

namespace troy::cli {
namespace {

struct FingerprintOptions {
  std::string image;
  std::string output;
  bool overwrite = false;
  ReadOptions read;
};

Result<size_t> write_fingerprint(const FingerprintOptions& options) {
  Diagnostics diagnostics;
  auto chain = open_chain(options.image, chain_options(options.read, diagnostics));
  print_warnings(diagnostics);
  if (!chain) return chain.error();
  TROY_ASSIGN(fingerprint, make_fingerprint(*chain));
  TROY_ASSIGN(out, OutputFile::create(options.output, options.overwrite, chain_paths(*chain)));
  const std::string text = serialize(fingerprint);
  TROY_TRY(out.write_at(0, std::as_bytes(std::span(text))));
  TROY_TRY(out.commit());
  return fingerprint.pieces.size();
}

int run_fingerprint(const FingerprintOptions& options) {
  const auto started = std::chrono::steady_clock::now();
  auto pieces = write_fingerprint(options);
  if (!pieces) return fail(pieces.error());
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  fmt::print(stderr, "troy: fingerprinted {}: {} pieces of its delta, base and new content, written to {} in {:.2f} s\n",
             options.image, *pieces, options.output, seconds);
  return kExitOk;
}

}  // namespace

void register_fingerprint(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<FingerprintOptions>();
  CLI::App* command = app.add_subcommand(
      "fingerprint", "Write the hashes of a delta's base content, for `troy apply --base-hashes` where only the delta travels");
  command->add_option("IMAGE", options->image, "The differencing image (its parent chain must be at hand)")->required();
  command->add_option("-o,--output", options->output, "The fingerprint file to write")->required();
  command->add_flag("--overwrite", options->overwrite, "Replace the output if it exists");
  add_read_options(*command, options->read);
  command->callback([options, &exit_code] { exit_code = run_fingerprint(*options); });
}

}  // namespace troy::cli
