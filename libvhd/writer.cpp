#include "writer.h"

#include <algorithm>
#include <bit>

#include <fmt/format.h>

#include "text.h"

namespace troy {
namespace {

constexpr uint64_t MiB = 1 << 20;

struct FormatLimits {
  uint64_t max_virtual_size;
  uint64_t min_block_size;
  uint64_t max_block_size;
};

// VHD: the spec's 2040 GiB (qemu's limit too); blocks as our reader accepts
// them, 512 KiB and 2 MiB being what Hyper-V itself offers. VHDX: [MS-VHDX].
constexpr FormatLimits kVhdLimits{2040ull << 30, 512 << 10, 256 * MiB};
constexpr FormatLimits kVhdxLimits{64ull << 40, 1 * MiB, 256 * MiB};

Result<void> check_sector_sizes(const ImageSpec& spec) {
  if (spec.format == ImageFormat::Vhd) {
    if (spec.logical_sector_size != 512)
      return Error{fmt::format("--sector-size {}: VHD has 512-byte sectors only (use VHDX for 4096)",
                               spec.logical_sector_size)};
    return success();
  }
  if (spec.logical_sector_size != 512 && spec.logical_sector_size != 4096)
    return Error{fmt::format("--sector-size {}: VHDX sectors are 512 or 4096 bytes", spec.logical_sector_size)};
  if (spec.physical_sector_size != 512 && spec.physical_sector_size != 4096)
    return Error{fmt::format("physical sector size {}: VHDX allows 512 or 4096", spec.physical_sector_size)};
  return success();
}

}  // namespace

uint64_t default_block_size(ImageFormat format, ImageType type) {
  if (format == ImageFormat::Vhd) return 2 * MiB;
  return type == ImageType::Differencing ? 2 * MiB : 32 * MiB;
}

std::string format_name(ImageFormat format) { return format == ImageFormat::Vhd ? "VHD" : "VHDX"; }

std::string type_name(ImageType type) {
  switch (type) {
    case ImageType::Fixed: return "fixed";
    case ImageType::Dynamic: return "dynamic";
    case ImageType::Differencing: return "differencing";
  }
  return "?";
}

Result<ImageSpec> complete_spec(ImageSpec spec) {
  const FormatLimits& limits = spec.format == ImageFormat::Vhd ? kVhdLimits : kVhdxLimits;
  const std::string format = format_name(spec.format);
  TROY_TRY(check_sector_sizes(spec));
  if (spec.format == ImageFormat::Vhd) spec.physical_sector_size = 512;
  if (spec.virtual_size == 0) return Error{"--size: the virtual disk size must be greater than zero"};
  if (spec.virtual_size % spec.logical_sector_size != 0)
    return Error{fmt::format("--size {}: not a multiple of the {}-byte sector size", human_bytes(spec.virtual_size),
                             spec.logical_sector_size)};
  if (spec.virtual_size > limits.max_virtual_size)
    return Error{fmt::format("--size {}: larger than {} allows ({})", human_bytes(spec.virtual_size), format,
                             human_bytes(limits.max_virtual_size))};
  if (spec.block_size == 0) spec.block_size = default_block_size(spec.format, spec.type);
  if (!std::has_single_bit(spec.block_size) || spec.block_size < limits.min_block_size ||
      spec.block_size > limits.max_block_size)
    return Error{fmt::format("--block-size {}: {} blocks are a power of two from {} KiB to {} MiB", human_bytes(spec.block_size),
                             format, limits.min_block_size >> 10, limits.max_block_size / MiB)};
  if ((spec.type == ImageType::Differencing) != spec.parent.has_value())
    return Error{spec.parent ? "a parent was given for an image that is not differencing"
                             : "a differencing image needs a parent"};
  return spec;
}

Result<std::unique_ptr<ImageWriter>> create_image(const ImageSpec& spec, Sink& sink) {
  TROY_ASSIGN(checked, complete_spec(spec));
  if (checked.format == ImageFormat::Vhd) return vhd::create_writer(checked, sink);
  return vhdx::create_writer(checked, sink);
}

ParentLink recorded_link(ImageFormat format, const ParentRecord& parent) {
  ParentLink link;
  link.expected_id = parent.link_id;
  const std::string relative = writer_detail::windows_relative_path(parent.relative_path);
  const std::string absolute = writer_detail::windows_path(parent.absolute_path);
  if (format == ImageFormat::Vhd) {
    link.locators = {{"W2ru", relative, true}, {"W2ku", absolute, false}};
    link.parent_name = parent.relative_path.substr(parent.relative_path.find_last_of('/') + 1);
    link.expected_id_field = "Parent Unique ID";
    link.parent_id_field = "footer Unique Id";
  } else {
    link.locators = {{"relative_path", relative, true}, {"absolute_win32_path", absolute, false}};
    link.expected_id_field = "parent_linkage";
    link.parent_id_field = "DataWriteGuid";
  }
  return link;
}

namespace {

std::string paths_of(const ParentLink& link, const std::string& kind) {
  std::string paths;
  for (const ParentLocator& locator : link.locators)
    if (locator.kind == kind) paths += (paths.empty() ? "" : " and ") + locator.path;
  return paths;
}

}  // namespace

std::vector<LocatorChange> locator_changes(const ParentLink& held, const ParentLink& wanted) {
  std::vector<std::string> kinds;
  for (const ParentLink* link : {&wanted, &held})
    for (const ParentLocator& locator : link->locators)
      if (std::find(kinds.begin(), kinds.end(), locator.kind) == kinds.end()) kinds.push_back(locator.kind);
  std::vector<LocatorChange> changes;
  for (const std::string& kind : kinds) {
    LocatorChange change{kind, paths_of(held, kind), paths_of(wanted, kind)};
    if (change.was != change.becomes) changes.push_back(std::move(change));
  }
  if (held.parent_name != wanted.parent_name)
    changes.push_back({"Parent Unicode Name", held.parent_name, wanted.parent_name});
  return changes;
}

namespace writer_detail {

std::string windows_path(const std::string& path) {
  std::string out = path;
  for (char& c : out)
    if (c == '/') c = '\\';
  return out;
}

std::string windows_relative_path(const std::string& relative) {
  const std::string path = windows_path(relative);
  if (path.starts_with("..\\") || path.starts_with(".\\")) return path;
  return ".\\" + path;
}

Result<void> check_range(const std::string& name, uint64_t virtual_size, uint32_t sector_size, uint64_t offset,
                         uint64_t length) {
  if (offset % sector_size != 0 || length % sector_size != 0)
    return Error{fmt::format("{}: write of {} bytes at offset {} is not in whole {}-byte sectors", name, length,
                             offset, sector_size)};
  if (offset > virtual_size || length > virtual_size - offset)
    return Error{fmt::format("{}: write of {} bytes at offset {} is past the end of the {}-byte virtual disk", name,
                             length, offset, virtual_size)};
  return success();
}

}  // namespace writer_detail
}  // namespace troy
