// troy diff PARENT NEW -o CHILD: a differencing child of the image PARENT
// that holds exactly the sectors where NEW (a raw disk) differs from it.
#include <chrono>
#include <cstring>

#include <fmt/format.h>

#include "chain.h"
#include "command_report.h"
#include "common.h"
#include "image_output.h"
#include "output_name.h"
#include "io.h"
#include "layout.h"
#include "text.h"

namespace troy::cli {
namespace {

struct DiffOptions {
  std::string parent;
  std::string updated;
  std::string output;
  std::string block_size;
  std::string format;
  bool overwrite = false;
  ReadOptions read;
  ReportOptions report;
};

struct DiffStats {
  uint64_t sectors_changed = 0;
  uint64_t bytes_changed = 0;
  uint64_t runs = 0;
};

// Stores each run of sectors where `updated` differs from `base`; runs of
// zeros go through write_zeros, so whole zero blocks can become ZERO blocks.
Result<void> store_differences(ImageWriter& writer, uint64_t offset, std::span<const std::byte> base,
                               std::span<const std::byte> updated, uint32_t sector, DiffStats& stats) {
  const auto differs = [&](size_t s) {
    return std::memcmp(base.data() + s * sector, updated.data() + s * sector, sector) != 0;
  };
  const size_t sectors = updated.size() / sector;
  for (size_t s = 0; s < sectors;) {
    if (!differs(s)) {
      s++;
      continue;
    }
    const size_t first = s;
    while (s < sectors && differs(s)) s++;
    const auto run = updated.subspan(first * sector, (s - first) * sector);
    const uint64_t at = offset + first * sector;
    if (all_zero(run)) TROY_TRY(writer.write_zeros(at, run.size()));
    else TROY_TRY(writer.write(at, run));
    stats.runs++;
    stats.sectors_changed += s - first;
    stats.bytes_changed += run.size();
  }
  return success();
}

int run_diff(const DiffOptions& options, const Console& console, CommandReport& report) {
  Json& json = report.json();
  json["parent"] = options.parent;
  json["new"] = options.updated;
  json["output"] = options.output;
  const auto started = std::chrono::steady_clock::now();
  Diagnostics diagnostics;
  auto chain = open_chain(options.parent, chain_options(options.read, diagnostics));
  print_warnings(diagnostics, console);
  if (!chain) return report.fail(chain.error());
  auto updated = PosixFile::open_read_only(options.updated);
  if (!updated) return report.fail(updated.error());
  const PosixFile& file = **updated;
  if (file.size() == 0) return report.fail(Error{fmt::format("{}: is empty; expected the disk's new content", options.updated)});
  const ChildRequest request{options.parent, options.output, options.format, options.block_size,
                             round_up(file.size(), chain->logical_sector_size()), options.updated};
  auto spec = child_spec(request, *chain);
  if (!spec) return report.fail(spec.error());
  if (spec->virtual_size > chain->virtual_size())
    console.warn("{} is larger than {}: the child grows the disk from {} to {} bytes",
                 options.updated, options.parent, chain->virtual_size(), spec->virtual_size);
  std::vector<std::string> inputs = chain_paths(*chain);
  inputs.push_back(options.updated);
  auto image = NewImage::create(options.output, *spec, options.overwrite, inputs);
  if (!image) return report.fail(image.error());
  ImageWriter& writer = (*image)->writer();
  AlignedBuffer base(chunk_size_for(writer));
  AlignedBuffer next(chunk_size_for(writer));
  const uint64_t size = spec->virtual_size;
  DiffStats stats;
  Progress progress("diff", size, console);
  for (uint64_t offset = 0; offset < size; offset += base.size) {
    const uint64_t length = std::min<uint64_t>(base.size, size - offset);
    const auto old_chunk = base.span().first(length);
    const auto new_chunk = next.span().first(length);
    // The parent reads zeros past its end; NEW may end mid-sector.
    const uint64_t in_parent = offset < chain->virtual_size() ? std::min(length, chain->virtual_size() - offset) : 0;
    const uint64_t in_file = offset < file.size() ? std::min(length, file.size() - offset) : 0;
    std::fill(old_chunk.begin(), old_chunk.end(), std::byte{0});
    std::fill(new_chunk.begin() + static_cast<ptrdiff_t>(in_file), new_chunk.end(), std::byte{0});
    // Holes of a sparse NEW read as zeros without being read; where the
    // parent holds nothing either, there is nothing to compare.
    const bool new_is_hole = file.is_hole(offset, in_file);
    auto parent_holds = chain->holds_anything(offset, in_parent);
    if (!parent_holds) return report.fail(parent_holds.error());
    if (new_is_hole && !*parent_holds) {
      progress.update(offset + length);
      continue;
    }
    if (auto read = chain->read(offset, old_chunk.first(in_parent)); !read) return report.fail(read.error());
    if (new_is_hole) std::fill(new_chunk.begin(), new_chunk.end(), std::byte{0});
    else if (auto read = file.read_at(offset, new_chunk.first(in_file)); !read) return report.fail(read.error());
    if (auto stored = store_differences(writer, offset, old_chunk, new_chunk, spec->logical_sector_size, stats); !stored)
      return report.fail(stored.error());
    progress.update(offset + length);
  }
  progress.finish();
  if (auto committed = (*image)->commit(); !committed) return report.fail(committed.error());
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  json["virtual_size_bytes"] = size;
  json["sectors_changed"] = stats.sectors_changed;
  json["bytes_changed"] = stats.bytes_changed;
  json["runs"] = stats.runs;
  json["duration_seconds"] = json_seconds(seconds);
  json["bytes_per_second"] = bytes_per_second(size, seconds);
  report.summary(fmt::format("wrote {}: {} changed in {}, {}, {}", options.output,
                             short_bytes(static_cast<double>(stats.bytes_changed)), count_of(stats.runs, "run"),
                             short_duration(seconds), short_rate(size, seconds)));
  return kExitOk;
}

}  // namespace

void register_diff(CLI::App& app, int& exit_code, const Console& console) {
  auto options = std::make_shared<DiffOptions>();
  CLI::App* command = app.add_subcommand(
      "diff", "Make a differencing child of the image PARENT holding exactly the sectors where NEW differs from it");
  command->add_option("PARENT", options->parent, "The image the disk started from (VHD or VHDX, any chain)")->required();
  command->add_option("NEW", options->updated, "The disk now: a raw file or block device")->required();
  auto out = std::make_shared<OutputName>(OutputName{"diff", "CHILD", "", ""});
  add_output_name(*command, *out, "The new child (.vhd for a VHD parent, .avhdx for VHDX)");
  command->add_option("-f,--format", options->format, "Child format (default: the parent's)")
      ->check(CLI::IsMember({"vhd", "vhdx"}));
  command->add_option("--block-size", options->block_size, "Child block size (default 2M, as Hyper-V)");
  command->add_flag("--overwrite", options->overwrite, "Replace the output if it exists");
  add_read_options(*command, options->read);
  add_report_options(*command, options->report);
  command->callback([options, out, &exit_code, &console] {
    CommandReport report("diff", options->report, console);
    auto named = chosen_output(*out);
    if (!named) {
      exit_code = report.finish(report.fail(named.error()));
      return;
    }
    options->output = *named;
    exit_code = report.finish(run_diff(*options, console, report));
  });
}

}  // namespace troy::cli
