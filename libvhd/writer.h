// Writing new images: fixed, dynamic and differencing, VHD and VHDX, behind
// one small interface. Each format's writer lives in its driver's own file
// (vhd_writer.cpp, vhdx_writer.cpp); create, capture, diff and convert talk
// only to ImageWriter.
//
// A writer fills a new file that no one else sees yet (tools/output.h names
// it only once finish() and the flush are done), so it writes data where it
// belongs as it arrives, keeps the block tables in memory, and writes all
// metadata once, in finish(). Updating an existing image in place (merge)
// needs the VHDX log and is not what this interface does.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "io.h"
#include "layer.h"

namespace troy {

enum class ImageFormat { Vhd, Vhdx };
enum class ImageType { Fixed, Dynamic, Differencing };

// What a new differencing image records about its parent.
struct ParentRecord {
  Guid link_id{};              // the parent's Layer::link_id(): VHD UniqueId, VHDX DataWriteGuid
  std::string relative_path;   // from the child's folder, '/' separators ("../base.vhdx")
  std::string absolute_path;   // as this machine sees it ("/srv/lab/base.vhdx")
  int64_t modified_unix = 0;   // the parent file's modification time (VHD records it)
};

struct ImageSpec {
  ImageFormat format = ImageFormat::Vhdx;
  ImageType type = ImageType::Dynamic;
  uint64_t virtual_size = 0;
  uint64_t block_size = 0;             // 0: Hyper-V's default for the format and type
  uint32_t logical_sector_size = 512;  // VHD: 512 only
  uint32_t physical_sector_size = 4096;
  std::optional<ParentRecord> parent;  // required for Differencing, refused otherwise
};

// Hyper-V's defaults: VHD 2 MiB; VHDX 32 MiB for fixed and dynamic, 2 MiB
// for differencing.
uint64_t default_block_size(ImageFormat format, ImageType type);

// Fills in defaults and checks the spec against the format's limits. Errors
// name the option a user sets ("--size", "--block-size", "--sector-size").
Result<ImageSpec> complete_spec(ImageSpec spec);

std::string format_name(ImageFormat format);  // "VHD", "VHDX"
std::string type_name(ImageType type);        // "fixed", "dynamic", "differencing"

class ImageWriter {
 public:
  virtual ~ImageWriter() = default;

  // The unit in which space is allocated; callers that read in multiples of
  // it write whole blocks.
  virtual uint64_t block_size() const = 0;

  // Stores data for [offset, offset + data.size()): whole logical sectors
  // inside the virtual disk. A range may be written again.
  virtual Result<void> write(uint64_t offset, std::span<const std::byte> data) = 0;

  // Makes whole logical sectors read as zeros, also over a parent. A base
  // image stores nothing for zeros it never held; a differencing VHDX marks
  // whole blocks ZERO and writes zeros for the rest.
  virtual Result<void> write_zeros(uint64_t offset, uint64_t length) = 0;

  // Writes the block tables, metadata, headers and footers. The caller then
  // flushes and names the file.
  virtual Result<void> finish() = 0;
};

// How a differencing image written (or re-linked) with `parent` names it, as
// the drivers read it back: the id, the locators (VHD W2ru and W2ku; VHDX
// relative_path and absolute_win32_path) and, for VHD, the Parent Unicode
// Name. The time stamp is left empty: no reader finds or verifies by it.
ParentLink recorded_link(ImageFormat format, const ParentRecord& parent);

// One way of naming the parent that differs: a locator (by its kind) or the
// parent name, with its value before and after; an empty value is absent.
struct LocatorChange {
  std::string field;  // "relative_path", "W2ku", "Parent Unicode Name", ...
  std::string was;
  std::string becomes;
};

// What writing `wanted` would change in the locators and parent name that
// `held` has (ids and time stamps aside); empty when nothing would. A kind
// `held` has twice compares with all its values.
std::vector<LocatorChange> locator_changes(const ParentLink& held, const ParentLink& wanted);

// Starts a new image of a completed spec in an empty sink.
Result<std::unique_ptr<ImageWriter>> create_image(const ImageSpec& spec, Sink& sink);

namespace vhd {
Result<std::unique_ptr<ImageWriter>> create_writer(const ImageSpec& spec, Sink& sink);
}
namespace vhdx {
Result<std::unique_ptr<ImageWriter>> create_writer(const ImageSpec& spec, Sink& sink);
}

// Helpers both writers use.
namespace writer_detail {
// "../lab/base.vhdx" -> "..\\lab\\base.vhdx"; a path that does not climb
// gets Windows' ".\\" prefix.
std::string windows_relative_path(const std::string& relative);
// "/srv/lab/base.vhdx" -> "\\srv\\lab\\base.vhdx".
std::string windows_path(const std::string& path);
// Checks [offset, offset + length) against the virtual disk and the sector size.
Result<void> check_range(const std::string& name, uint64_t virtual_size, uint32_t sector_size, uint64_t offset,
                         uint64_t length);
}  // namespace writer_detail

}  // namespace troy
