// Random identifiers for new images (VHD UniqueId, VHDX GUIDs).
#pragma once

#include "layer.h"
#include "result.h"

namespace troy {

// A version-4 GUID from the kernel's random source, in the byte order both
// formats store: VHD's UniqueId is opaque, and for VHDX the version nibble is
// placed in the little-endian third group where Windows expects it.
Result<Guid> random_guid();

}  // namespace troy
