// What every parser fuzz target does with an input once it is a Source: open
// it as an image, strictly and then collecting problems with checksums
// ignored, and exercise the layer it gives. Any outcome but a crash, a hang
// or an out-of-bounds access is fine.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "image.h"
#include "io.h"

namespace troy::fuzz {

constexpr uint64_t kProbeWindow = 64ull << 20;
constexpr size_t kReadSize = 64 * 1024;

inline void exercise(const Layer& layer) {
  std::vector<Extent> extents;
  const uint64_t window = std::min<uint64_t>(layer.virtual_size(), kProbeWindow);
  if (!layer.extents(0, window, extents).ok()) return;
  std::vector<std::byte> buffer(kReadSize);
  for (const Extent& extent : extents) {
    if (extent.kind != ExtentKind::Data) continue;
    const size_t length = std::min<uint64_t>(extent.length, buffer.size());
    (void)layer.read(extent.offset, std::span(buffer).first(length));
  }
  (void)layer.info();
}

inline void open_both_ways(const std::function<std::unique_ptr<Source>()>& make_source) {
  for (const bool lenient : {false, true}) {
    Diagnostics diagnostics;
    diagnostics.collect_problems = lenient;
    OpenOptions options;
    options.ignore_checksums = lenient;
    options.diagnostics = &diagnostics;
    auto layer = open_layer(make_source(), options);
    if (layer) exercise(**layer);
  }
}

}  // namespace troy::fuzz
