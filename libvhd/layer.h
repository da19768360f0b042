// "A layer of a virtual disk": the one small interface that chain resolution,
// convert, and later merge and apply are written against. Each format (VHD,
// VHDX) implements it in its own file; nothing outside a driver looks at a
// format's internals.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "result.h"

namespace troy {

// What a layer says about a range of the virtual disk. Ranges a layer does not
// mention are not held by it: they read from the parent, or as zeros in the
// bottom layer.
enum class ExtentKind {
  Data,  // this layer holds the bytes
  Zero,  // reads as zeros even over a parent (VHDX ZERO / UNMAPPED blocks)
};

struct Extent {
  uint64_t offset = 0;
  uint64_t length = 0;
  ExtentKind kind = ExtentKind::Data;
  uint64_t end() const { return offset + length; }
};

using Guid = std::array<uint8_t, 16>;

// One way a child names its parent, in the order the driver wants them tried.
struct ParentLocator {
  std::string kind;  // "W2ru", "W2ku", "MacX", "relative_path", ...
  std::string path;  // decoded to UTF-8, as stored (Windows separators kept)
  bool relative = false;
};

struct ParentLink {
  std::vector<ParentLocator> locators;
  std::string parent_name;   // a file name hint (VHD Parent Unicode Name), may be empty
  Guid expected_id{};        // the parent's link_id() must equal this
  std::string expected_id_field;  // what the child calls it ("Parent Unique ID", "parent_linkage")
  std::string parent_id_field;    // what the parent calls its link_id ("UniqueId", "DataWriteGuid")
  std::string parent_time;   // when the parent was last changed, as the child records it (display only)
};

// One typed value of a format-specific fact: text (ids, times, states), a
// number (sizes, offsets, counts) or a flag.
using InfoValue = std::variant<std::string, uint64_t, bool>;

// A format-specific fact of `troy info`: `text` is the line people read,
// `fields` the same typed for `--json`: one unnamed field for a plain
// value, named fields for a record (a locator, a region). Both are kept
// because the display text is phrased (hex offsets, "yes"), the fields not.
struct InfoDetail {
  std::string key;  // snake_case; a key may repeat (parent locators)
  std::string text;
  std::vector<std::pair<std::string, InfoValue>> fields;
};

inline InfoDetail info_detail(std::string key, std::string text, InfoValue value) {
  return InfoDetail{std::move(key), std::move(text), {{"", std::move(value)}}};
}

// Facts for `troy info`, common to all formats plus format-specific lines.
struct LayerInfo {
  std::string format;        // "vhd" or "vhdx"
  std::string type;          // "fixed", "dynamic", "differencing"
  uint64_t virtual_size = 0;
  uint32_t logical_sector_size = 512;
  uint64_t block_size = 0;   // 0 for fixed images
  uint64_t allocated_blocks = 0;
  uint64_t allocated_bytes = 0;
  uint64_t file_size = 0;
  std::string creator;
  std::string id;            // printable link id (VHD UniqueId, VHDX DataWriteGuid)
  std::vector<InfoDetail> details;  // format-specific
};

class Layer {
 public:
  virtual ~Layer() = default;

  virtual const std::string& path() const = 0;
  virtual uint64_t virtual_size() const = 0;
  virtual uint32_t logical_sector_size() const = 0;

  // The parent this layer needs, or nullptr for a base layer.
  virtual const ParentLink* parent_link() const = 0;
  // The identity that children record to name this layer as their parent.
  virtual Guid link_id() const = 0;
  virtual std::string format_id(const Guid& id) const = 0;

  // Appends, in offset order, the extents this layer holds inside
  // [offset, offset + length), clipped to that range. Never merges extents of
  // different kinds.
  virtual Result<void> extents(uint64_t offset, uint64_t length, std::vector<Extent>& out) const = 0;

  // Reads bytes inside Data extents. Ranges the layer does not hold read as zeros.
  virtual Result<void> read(uint64_t offset, std::span<std::byte> out) const = 0;

  virtual LayerInfo info() const = 0;
};

// Where recoverable problems go. `troy check` collects them and carries on;
// every other command turns the first one into an error.
struct Diagnostics {
  bool collect_problems = false;
  std::vector<std::string> problems;
  std::vector<std::string> warnings;

  // Records a problem in collecting mode; otherwise returns it as an error.
  Result<void> problem(std::string message) {
    if (!collect_problems) return Error{std::move(message)};
    problems.push_back(std::move(message));
    return success();
  }

  // A problem that does not stop reading: `troy check` reports it, other
  // commands print it as a warning.
  void note(std::string message) {
    (collect_problems ? problems : warnings).push_back(std::move(message));
  }
};

struct OpenOptions {
  bool ignore_checksums = false;
  Diagnostics* diagnostics = nullptr;  // must be set
  // Open an image even though a merge into it is unfinished (its merge
  // journal exists): only merge itself does, to finish it.
  bool merge_in_progress_ok = false;
};

}  // namespace troy
