// libFuzzer target for the image parsers: any byte string opened as an image
// must give a Layer or an Error, never a crash, a hang or an out-of-bounds
// access; a Layer must answer extents() and read() within its size.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "image.h"
#include "io.h"

namespace {

constexpr uint64_t kProbeWindow = 64ull << 20;
constexpr size_t kReadSize = 64 * 1024;

void exercise(const troy::Layer& layer) {
  std::vector<troy::Extent> extents;
  const uint64_t window = std::min<uint64_t>(layer.virtual_size(), kProbeWindow);
  if (!layer.extents(0, window, extents).ok()) return;
  std::vector<std::byte> buffer(kReadSize);
  for (const troy::Extent& extent : extents) {
    if (extent.kind != troy::ExtentKind::Data) continue;
    const size_t length = std::min<uint64_t>(extent.length, buffer.size());
    (void)layer.read(extent.offset, std::span(buffer).first(length));
  }
  (void)layer.info();
}

void open_once(const uint8_t* data, size_t size, bool collect, bool ignore_checksums) {
  std::vector<std::byte> bytes(size);
  if (size != 0) std::memcpy(bytes.data(), data, size);
  troy::Diagnostics diagnostics;
  diagnostics.collect_problems = collect;
  troy::OpenOptions options;
  options.ignore_checksums = ignore_checksums;
  options.diagnostics = &diagnostics;
  auto layer = troy::open_layer(std::make_unique<troy::MemorySource>("fuzz", std::move(bytes)), options);
  if (layer) exercise(**layer);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  open_once(data, size, false, false);
  open_once(data, size, true, true);
  return 0;
}
