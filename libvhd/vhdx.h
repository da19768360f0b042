// The VHDX driver: dynamic, fixed and differencing (.avhdx) images behind
// Layer, the metadata log replayed in memory on open.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "io.h"
#include "layer.h"

namespace troy::vhdx {

// True when the source starts with the "vhdxfile" file type identifier.
bool probe(const Source& source);

Result<std::unique_ptr<Layer>> open(std::unique_ptr<Source> source, const OpenOptions& options);

// GUIDs as Windows prints them ("2dc27766-f623-4200-9d64-115e9bfd4a08"),
// converted to and from the mixed-endian bytes stored in the file.
std::string guid_to_text(const Guid& guid);
std::optional<Guid> guid_from_text(std::string_view text);  // braces optional

}  // namespace troy::vhdx
