// troy create: a new empty image (fixed or dynamic), or an empty
// differencing child of an existing image (--parent).
#include <fmt/format.h>

#include "chain.h"
#include "command_report.h"
#include "common.h"
#include "image_output.h"
#include "text.h"

namespace troy::cli {
namespace {

struct CreateOptions {
  std::string output;
  std::string size;
  std::string parent;
  ImageOutputOptions image;
  ReadOptions read;  // for the parent's chain
  ReportOptions report;
};

// The child records the parent's identity, so the parent's whole chain must
// open and verify now rather than when the child is first used.
Result<ImageSpec> differencing_spec(const CreateOptions& options, Diagnostics& diagnostics,
                                    std::vector<std::string>& inputs) {
  TROY_ASSIGN(chain, open_chain(options.parent, chain_options(options.read, diagnostics)));
  inputs = chain_paths(chain);
  if (options.image.sector_size != 0 && options.image.sector_size != chain.logical_sector_size())
    return Error{fmt::format("--sector-size {}: a child has its parent's {}-byte sectors", options.image.sector_size,
                             chain.logical_sector_size())};
  ChildRequest request{options.parent, options.output, options.image.format, options.image.block_size, 0,
                       "--size " + options.size};
  if (!options.size.empty()) {
    TROY_ASSIGN(size, parse_size(options.size, "--size"));
    request.virtual_size = size;
  }
  return child_spec(request, chain);
}

Result<ImageSpec> new_spec(const CreateOptions& options, Diagnostics& diagnostics, std::vector<std::string>& inputs) {
  if (!options.parent.empty()) {
    if (!options.image.type.empty())
      return Error{"--type: a child of --parent is always a differencing image"};
    return differencing_spec(options, diagnostics, inputs);
  }
  if (options.size.empty()) return Error{"--size is required (or --parent for a differencing child)"};
  TROY_ASSIGN(size, parse_size(options.size, "--size"));
  return base_spec(options.image, options.output, size, 512);
}

int run_create(const CreateOptions& options, const Console& console, CommandReport& report) {
  report.json()["output"] = options.output;
  Diagnostics diagnostics;
  std::vector<std::string> inputs;  // a child's parent chain, never replaced by OUT
  auto spec = new_spec(options, diagnostics, inputs);
  print_warnings(diagnostics, console);
  if (!spec) return report.fail(spec.error());
  auto image = NewImage::create(options.output, *spec, options.image.overwrite, inputs);
  if (!image) return report.fail(image.error());
  if (auto committed = (*image)->commit(); !committed) return report.fail(committed.error());
  Json& json = report.json();
  json["format"] = spec->format == ImageFormat::Vhd ? "vhd" : "vhdx";
  json["type"] = type_name(spec->type);
  json["virtual_size_bytes"] = spec->virtual_size;
  json["block_size_bytes"] = spec->block_size;
  json["logical_sector_size_bytes"] = spec->logical_sector_size;
  json["parent"] = spec->parent ? Json(options.parent) : Json(nullptr);
  json["parent_relative_path"] = spec->parent ? Json(spec->parent->relative_path) : Json(nullptr);
  report.summary(fmt::format("created {}: {} {}, {}{}", options.output, type_name(spec->type),
                             format_name(spec->format), short_bytes(static_cast<double>(spec->virtual_size)),
                             spec->parent ? fmt::format(", child of {}", options.parent) : ""));
  return kExitOk;
}

}  // namespace

void register_create(CLI::App& app, int& exit_code, const Console& console) {
  auto options = std::make_shared<CreateOptions>();
  CLI::App* command = app.add_subcommand(
      "create", "Create an empty VHD or VHDX image, or an empty differencing child of an image (--parent)");
  command->add_option("OUT", options->output, "New image file (.vhd, .vhdx, .avhdx)")->required();
  command->add_option("--size", options->size, "Virtual disk size, e.g. 40G (a child: at least its parent's)");
  command->add_option("--parent", options->parent, "Make OUT a differencing child of this image");
  add_image_output_options(*command, options->image, true);
  command->add_flag("--force", options->read.force,
                    "Accept a parent whose own parent's id does not match, or that is smaller than its parent");
  command->add_flag("--ignore-checksums", options->read.ignore_checksums, "Read structures whose checksum is wrong");
  add_report_options(*command, options->report);
  command->callback([options, &exit_code, &console] {
    CommandReport report("create", options->report, console);
    exit_code = report.finish(run_create(*options, console, report));
  });
}

}  // namespace troy::cli
