// troy convert [-O raw|vhd|vhdx] IMAGE OUT: writes the resolved virtual disk,
// as a raw file or as a new standalone image.
#include <chrono>
#include <vector>

#include <fmt/format.h>

#include "chain.h"
#include "command_report.h"
#include "common.h"
#include "image_output.h"
#include "output.h"
#include "output_name.h"
#include "text.h"

namespace troy::cli {
namespace {

constexpr uint64_t kChunk = 4 << 20;         // large reads; a multiple of every block size we split on
constexpr uint64_t kZeroGranule = 64 << 10;  // runs of zeros this large stay holes in a file output

struct ConvertOptions {
  std::string image_path;
  std::string output;
  std::string output_format = "raw";
  ImageOutputOptions image;
  ReadOptions read;
  ReportOptions report;
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

Result<void> copy_chain(const Chain& chain, OutputFile& out, Progress& progress) {
  const uint64_t size = chain.virtual_size();
  TROY_TRY(out.set_size(size));
  std::vector<std::byte> buffer(kChunk);
  for (uint64_t offset = 0; offset < size; offset += kChunk) {
    progress.update(offset);  // holes count too: they are part of the disk written
    const auto chunk = std::span(buffer).first(std::min<uint64_t>(kChunk, size - offset));
    TROY_ASSIGN(holds, chain.holds_anything(offset, chunk.size()));
    if (!holds && !out.is_stream()) continue;  // stays a hole
    TROY_TRY(chain.read(offset, chunk));
    if (out.is_stream()) TROY_TRY(out.write_at(offset, chunk));
    else TROY_TRY(write_sparse(out, offset, chunk));
    out.start_writeback(offset, chunk.size());
  }
  progress.update(size);
  progress.finish();
  return success();
}

// -O vhd|vhdx: flattens the chain into a new base image; blocks that read
// as zeros are not stored.
Result<StoreStats> convert_to_image(const Chain& chain, const ConvertOptions& options, const Console& console) {
  ImageOutputOptions image = options.image;
  image.format = options.output_format;
  // The disk's own sector size, except that VHD only has 512-byte sectors.
  uint32_t sector = chain.logical_sector_size();
  if (image.format == "vhd" && image.sector_size == 0 && sector != 512) {
    console.warn("{} has {}-byte sectors; a VHD has 512-byte sectors, so the copy presents the same bytes with "
                 "512-byte sectors", options.image_path, sector);
    sector = 512;
  }
  if (image.sector_size != 0) sector = image.sector_size;
  // Said here about the input, or the writer would blame --size, which
  // convert does not even have.
  if (chain.virtual_size() == 0)
    return Error{fmt::format("{}: virtual size is 0 bytes ({} field): there is no disk to write as {}",
                             options.image_path, virtual_size_field(chain.top()), image.format)};
  if (chain.virtual_size() % sector != 0)
    return Error{fmt::format("--sector-size {}: {}'s disk of {} bytes is not whole {}-byte sectors", sector,
                             options.image_path, chain.virtual_size(), sector)};
  TROY_ASSIGN(spec, base_spec(image, options.output, chain.virtual_size(), sector));
  TROY_ASSIGN(out, NewImage::create(options.output, spec, image.overwrite, chain_paths(chain)));
  const ChunkReader read = [&](uint64_t offset, std::span<std::byte> chunk) -> Result<bool> {
    TROY_ASSIGN(holds, chain.holds_anything(offset, chunk.size()));
    if (holds) TROY_TRY(chain.read(offset, chunk));
    return holds;
  };
  Progress progress("convert", chain.virtual_size(), console);
  TROY_ASSIGN(stats, store_nonzero_blocks(out->writer(), chain.virtual_size(), read, progress));
  TROY_TRY(out->commit());
  return stats;
}

Result<void> convert_to_raw(const Chain& chain, const ConvertOptions& options, const Console& console) {
  TROY_ASSIGN(out, OutputFile::create(options.output, options.image.overwrite, chain_paths(chain)));
  Progress progress("convert", chain.virtual_size(), console);
  TROY_TRY(copy_chain(chain, out, progress));
  return out.commit();
}

int run_convert(const ConvertOptions& options, const Console& console, CommandReport& report) {
  Json& json = report.json();
  json["image"] = options.image_path;
  json["output"] = options.output;
  json["output_format"] = options.output_format;
  if (report.options().json && options.output == "-")
    return report.fail(Error{"--json: standard output holds the disk (OUT is -); write OUT to a file"});
  if (options.output_format == "raw" && (!options.image.type.empty() || !options.image.block_size.empty() ||
                                         options.image.sector_size != 0))
    return report.fail(Error{"--type, --block-size and --sector-size apply to -O vhd|vhdx only"});
  const auto started = std::chrono::steady_clock::now();
  Diagnostics diagnostics;
  auto chain = open_chain(options.image_path, chain_options(options.read, diagnostics));
  print_warnings(diagnostics, console);
  if (!chain) return report.fail(chain.error());
  for (const std::string& line : parent_lines(*chain)) console.say("{}", line);
  std::string stored;
  if (options.output_format == "raw") {
    if (auto done = convert_to_raw(*chain, options, console); !done) return report.fail(done.error());
  } else {
    auto stats = convert_to_image(*chain, options, console);
    if (!stats) return report.fail(stats.error());
    stored = fmt::format(", {} stored", short_bytes(static_cast<double>(stats->bytes_stored)));
    json["bytes_stored"] = stats->bytes_stored;
    json["blocks_stored"] = stats->blocks_stored;
    json["zero_blocks_skipped"] = stats->zero_blocks_skipped;
  }
  const uint64_t size = chain->virtual_size();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  json["layers"] = chain->layers().size();
  json["virtual_size_bytes"] = size;
  json["duration_seconds"] = json_seconds(seconds);
  json["bytes_per_second"] = bytes_per_second(size, seconds);
  // Standard output held the disk: no line after it on a terminal.
  if (options.output != "-")
    report.summary(fmt::format("converted {} to {} ({}): {}{}, {}, {}", options.image_path, options.output,
                               options.output_format, short_bytes(static_cast<double>(size)), stored,
                               short_duration(seconds), short_rate(size, seconds)));
  return kExitOk;
}

}  // namespace

void register_convert(CLI::App& app, int& exit_code, const Console& console) {
  auto options = std::make_shared<ConvertOptions>();
  CLI::App* command = app.add_subcommand(
      "convert", "Write the resolved virtual disk of an image chain as a raw file (sparse where it is zero) or as a new standalone VHD or VHDX");
  command->add_option("-O,--output-format", options->output_format, "Output format")
      ->check(CLI::IsMember({"raw", "vhd", "vhdx"}))
      ->default_str("raw");
  command->add_option("IMAGE", options->image_path, "VHD or VHDX image (the top of a chain)")->required();
  auto out = std::make_shared<OutputName>(OutputName{"convert", "OUT", "", ""});
  add_output_name(*command, *out, "Output file, or - for standard output (raw only)");
  command->add_option("--type", options->image.type, "fixed or dynamic (-O vhd|vhdx; default dynamic)")
      ->check(CLI::IsMember({"fixed", "dynamic"}));
  command->add_option("--block-size", options->image.block_size,
                      "Block size, e.g. 2M (-O vhd|vhdx; default as Hyper-V: VHD 2M, VHDX 32M)");
  command->add_option("--sector-size", options->image.sector_size,
                      "Logical sector size 512 or 4096 (-O vhdx; default the image's)")
      ->check(CLI::IsMember({512, 4096}));
  command->add_flag("--overwrite", options->image.overwrite, "Replace OUT if it exists");
  add_read_options(*command, options->read);
  add_report_options(*command, options->report);
  command->callback([options, out, &exit_code, &console] {
    CommandReport report("convert", options->report, console);
    auto named = chosen_output(*out);
    if (!named) {
      exit_code = report.finish(report.fail(named.error()));
      return;
    }
    options->output = *named;
    exit_code = report.finish(run_convert(*options, console, report));
  });
}

}  // namespace troy::cli
