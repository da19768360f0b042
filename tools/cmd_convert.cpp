// troy convert [-O raw] IMAGE OUT: writes the resolved virtual disk.
#include <chrono>
#include <vector>

#include <fmt/format.h>

#include "chain.h"
#include "common.h"
#include "output.h"
#include "text.h"

namespace troy::cli {
namespace {

constexpr uint64_t kChunk = 4 << 20;         // large reads; a multiple of every block size we split on
constexpr uint64_t kZeroGranule = 64 << 10;  // runs of zeros this large stay holes in a file output

struct ConvertOptions {
  std::string image;
  std::string output;
  std::string output_format = "raw";
  bool overwrite = false;
  ReadOptions read;
};

// Writes the non-zero parts of a chunk, so the output file stays sparse.
Result<void> write_sparse(OutputFile& out, uint64_t offset, std::span<const std::byte> chunk) {
  size_t run_start = 0;
  size_t run_end = 0;
  for (size_t at = 0; at < chunk.size(); at += kZeroGranule) {
    const auto granule = chunk.subspan(at, std::min<size_t>(kZeroGranule, chunk.size() - at));
    if (all_zero(granule)) continue;
    if (at != run_end) {
      if (run_end > run_start) TROY_TRY(out.write_at(offset + run_start, chunk.subspan(run_start, run_end - run_start)));
      run_start = at;
    }
    run_end = at + granule.size();
  }
  if (run_end > run_start) TROY_TRY(out.write_at(offset + run_start, chunk.subspan(run_start, run_end - run_start)));
  return success();
}

Result<void> copy_chain(const Chain& chain, OutputFile& out) {
  const uint64_t size = chain.virtual_size();
  TROY_TRY(out.set_size(size));
  std::vector<std::byte> buffer(kChunk);
  for (uint64_t offset = 0; offset < size; offset += kChunk) {
    const auto chunk = std::span(buffer).first(std::min<uint64_t>(kChunk, size - offset));
    TROY_ASSIGN(holds, chain.holds_anything(offset, chunk.size()));
    if (!holds && !out.is_stream()) continue;  // stays a hole
    TROY_TRY(chain.read(offset, chunk));
    if (out.is_stream()) TROY_TRY(out.write_at(offset, chunk));
    else TROY_TRY(write_sparse(out, offset, chunk));
    out.start_writeback(offset, chunk.size());
  }
  return success();
}

int run_convert(const ConvertOptions& options) {
  if (options.output_format != "raw")
    return fail(Error{fmt::format("-O {}: only raw output is supported so far", options.output_format)});
  const auto started = std::chrono::steady_clock::now();
  Diagnostics diagnostics;
  auto chain = open_chain(options.image, chain_options(options.read, diagnostics));
  print_warnings(diagnostics);
  if (!chain) return fail(chain.error());
  auto out = OutputFile::create(options.output, options.overwrite);
  if (!out) return fail(out.error());
  if (auto copied = copy_chain(*chain, *out); !copied) return fail(copied.error());
  if (auto committed = out->commit(); !committed) return fail(committed.error());
  if (!out->is_stream()) {
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    fmt::print(stderr, "troy: wrote {} ({} layer(s) resolved) to {} in {:.2f} s\n", human_bytes(chain->virtual_size()),
               chain->layers().size(), options.output, seconds);
  }
  return kExitOk;
}

}  // namespace

void register_convert(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<ConvertOptions>();
  CLI::App* command = app.add_subcommand(
      "convert", "Write the resolved virtual disk of an image chain (a file output is sparse where it is zero)");
  command->add_option("-O,--output-format", options->output_format, "Output format")
      ->check(CLI::IsMember({"raw"}))
      ->default_str("raw");
  command->add_option("IMAGE", options->image, "VHD or VHDX image (the top of a chain)")->required();
  command->add_option("OUT", options->output, "Output file, or - for standard output")->required();
  command->add_flag("--overwrite", options->overwrite, "Replace OUT if it exists");
  add_read_options(*command, options->read);
  command->callback([options, &exit_code] { exit_code = run_convert(*options); });
}

}  // namespace troy::cli
