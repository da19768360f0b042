// libFuzzer target for the image parsers: any byte string opened as an image
// must give a Layer or an Error, never a crash, a hang or an out-of-bounds
// access; a Layer must answer extents() and read() within its size.
#include <cstring>

#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  troy::fuzz::open_both_ways([&] {
    std::vector<std::byte> bytes(size);
    if (size != 0) std::memcpy(bytes.data(), data, size);
    return std::make_unique<troy::MemorySource>("fuzz", std::move(bytes));
  });
  return 0;
}
