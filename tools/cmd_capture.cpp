// troy capture SOURCE OUT: a base image of a raw disk (a file, a whole disk,
// a partition, a loop device). Blocks that are all zeros are not stored.
#include <fcntl.h>

#include <chrono>

#include <fmt/format.h>

#include "command_report.h"
#include "common.h"
#include "image.h"
#include "image_output.h"
#include "io.h"
#include "layout.h"
#include "text.h"

namespace troy::cli {
namespace {

struct CaptureOptions {
  std::string source;
  std::string output;
  ImageOutputOptions image;
  ReportOptions report;
};

// Reading a VHD file as a raw disk is almost always a mistake: say so.
void warn_if_image(const std::string& path, const Console& console) {
  Diagnostics quiet;
  OpenOptions options;
  options.diagnostics = &quiet;
  if (open_layer(path, options).ok())
    console.warn("{} is itself a VHD/VHDX image; capture stores its file bytes as a raw disk "
                 "(use `troy convert -O vhd|vhdx` to copy the disk it holds)",
                 path);
}

int run_capture(const CaptureOptions& options, const Console& console, CommandReport& report) {
  Json& json = report.json();
  json["source"] = options.source;
  json["output"] = options.output;
  const auto started = std::chrono::steady_clock::now();
  auto source = PosixFile::open_read_only(options.source);
  if (!source) return report.fail(source.error());
  const PosixFile& file = **source;
  if (file.size() == 0) return report.fail(Error{fmt::format("{}: is empty; nothing to capture", options.source)});
  warn_if_image(options.source, console);
  const uint32_t sector = options.image.sector_size != 0 ? options.image.sector_size : 512;
  const uint64_t virtual_size = round_up(file.size(), sector);
  if (virtual_size != file.size())
    console.warn("{} is {} bytes, not whole {}-byte sectors; the image is {} bytes, the rest zeros",
                 options.source, file.size(), sector, virtual_size);
  auto spec = base_spec(options.image, options.output, virtual_size, sector);
  if (!spec) return report.fail(spec.error());
  auto image = NewImage::create(options.output, *spec, options.image.overwrite, {options.source});
  if (!image) return report.fail(image.error());
  ::posix_fadvise(file.fd(), 0, 0, POSIX_FADV_SEQUENTIAL);
  const ChunkReader read = [&](uint64_t offset, std::span<std::byte> chunk) -> Result<bool> {
    const uint64_t present = offset < file.size() ? std::min<uint64_t>(chunk.size(), file.size() - offset) : 0;
    if (file.is_hole(offset, present)) return false;
    TROY_TRY(file.read_at(offset, chunk.first(present)));
    std::fill(chunk.begin() + static_cast<ptrdiff_t>(present), chunk.end(), std::byte{0});
    return true;
  };
  Progress progress("capture", virtual_size, console);
  auto stats = store_nonzero_blocks((*image)->writer(), virtual_size, read, progress);
  if (!stats) return report.fail(stats.error());
  if (auto committed = (*image)->commit(); !committed) return report.fail(committed.error());
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  json["format"] = spec->format == ImageFormat::Vhd ? "vhd" : "vhdx";
  json["type"] = type_name(spec->type);
  json["virtual_size_bytes"] = virtual_size;
  json["bytes_stored"] = stats->bytes_stored;
  json["blocks_stored"] = stats->blocks_stored;
  json["zero_blocks_skipped"] = stats->zero_blocks_skipped;
  json["duration_seconds"] = json_seconds(seconds);
  json["bytes_per_second"] = bytes_per_second(virtual_size, seconds);
  report.summary(fmt::format("captured {} to {}: {}, {} stored, {}, {}", options.source, options.output,
                             short_bytes(static_cast<double>(virtual_size)),
                             short_bytes(static_cast<double>(stats->bytes_stored)), short_duration(seconds),
                             short_rate(virtual_size, seconds)));
  return kExitOk;
}

}  // namespace

void register_capture(CLI::App& app, int& exit_code, const Console& console) {
  auto options = std::make_shared<CaptureOptions>();
  CLI::App* command = app.add_subcommand(
      "capture", "Make a base image (VHD or VHDX) of a raw disk: a file, a whole disk, a partition, a loop device");
  command->add_option("SOURCE", options->source, "Raw file or block device to read")->required();
  command->add_option("OUT", options->output, "New image file (.vhd, .vhdx)")->required();
  add_image_output_options(*command, options->image, true);
  add_report_options(*command, options->report);
  command->callback([options, &exit_code, &console] {
    CommandReport report("capture", options->report, console);
    exit_code = report.finish(run_capture(*options, console, report));
  });
}

}  // namespace troy::cli
