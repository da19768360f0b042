// Opening one image file of any supported format, by probing its content.
#pragma once

#include <memory>
#include <string>

#include "io.h"
#include "layer.h"

namespace troy {

// Opens `path` read-only and hands it to the driver whose probe accepts it.
Result<std::unique_ptr<Layer>> open_layer(const std::string& path, const OpenOptions& options);

// Opens an already opened source (memory buffers in tests and fuzzing).
Result<std::unique_ptr<Layer>> open_layer(std::unique_ptr<Source> source, const OpenOptions& options);

}  // namespace troy
