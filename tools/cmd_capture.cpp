// troy capture SOURCE OUT: a base image of a raw disk (a file, a whole disk,
// a partition, a loop device). Blocks that are all zeros are not stored.
#include <fcntl.h>

#include <chrono>

#include <fmt/format.h>

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
};

// Reading a VHD file as a raw disk is almost always a mistake: say so.
void warn_if_image(const std::string& path) {
  Diagnostics quiet;
  OpenOptions options;
  options.diagnostics = &quiet;
  if (open_layer(path, options).ok())
    fmt::print(stderr,
               "troy: warning: {} is itself a VHD/VHDX image; capture stores its file bytes as a raw disk "
               "(use `troy convert -O vhd|vhdx` to copy the disk it holds)\n",
               path);
}

int run_capture(const CaptureOptions& options) {
  const auto started = std::chrono::steady_clock::now();
  auto source = PosixFile::open_read_only(options.source);
  if (!source) return fail(source.error());
  const PosixFile& file = **source;
  if (file.size() == 0) return fail(Error{fmt::format("{}: is empty; nothing to capture", options.source)});
  warn_if_image(options.source);
  const uint32_t sector = options.image.sector_size != 0 ? options.image.sector_size : 512;
  const uint64_t virtual_size = round_up(file.size(), sector);
  if (virtual_size != file.size())
    fmt::print(stderr, "troy: warning: {} is {} bytes, not whole {}-byte sectors; the image is {} bytes, the rest zeros\n",
               options.source, file.size(), sector, virtual_size);
  auto spec = base_spec(options.image, options.output, virtual_size, sector);
  if (!spec) return fail(spec.error());
  auto image = NewImage::create(options.output, *spec, options.image.overwrite, {options.source});
  if (!image) return fail(image.error());
  ::posix_fadvise(file.fd(), 0, 0, POSIX_FADV_SEQUENTIAL);
  const ChunkReader read = [&](uint64_t offset, std::span<std::byte> chunk) -> Result<bool> {
    const uint64_t present = offset < file.size() ? std::min<uint64_t>(chunk.size(), file.size() - offset) : 0;
    if (file.is_hole(offset, present)) return false;
    TROY_TRY(file.read_at(offset, chunk.first(present)));
    std::fill(chunk.begin() + static_cast<ptrdiff_t>(present), chunk.end(), std::byte{0});
    return true;
  };
  Progress progress("capture", virtual_size);
  auto stats = store_nonzero_blocks((*image)->writer(), virtual_size, read, progress);
  if (!stats) return fail(stats.error());
  if (auto committed = (*image)->commit(); !committed) return fail(committed.error());
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  fmt::print(stderr, "troy: captured {}, {}, into {} ({} {}): {} stored in {} blocks, {} zero blocks skipped; {:.2f} s, {}\n",
             options.source, human_bytes(virtual_size), options.output, type_name(spec->type),
             format_name(spec->format), human_bytes(stats->bytes_stored), stats->blocks_stored,
             stats->zero_blocks_skipped, seconds, rate(virtual_size, seconds));
  return kExitOk;
}

}  // namespace

void register_capture(CLI::App& app, int& exit_code, [[maybe_unused]] const Console& console) {
  auto options = std::make_shared<CaptureOptions>();
  CLI::App* command = app.add_subcommand(
      "capture", "Make a base image (VHD or VHDX) of a raw disk: a file, a whole disk, a partition, a loop device");
  command->add_option("SOURCE", options->source, "Raw file or block device to read")->required();
  command->add_option("OUT", options->output, "New image file (.vhd, .vhdx)")->required();
  add_image_output_options(*command, options->image, true);
  command->callback([options, &exit_code] { exit_code = run_capture(*options); });
}

}  // namespace troy::cli
