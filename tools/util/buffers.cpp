#include "buffers.h"

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <utility>

#include <fmt/format.h>

namespace troy::cli {
namespace {

constexpr size_t kIoAlignment = 4096;

}  // namespace

Result<uint64_t> parse_size(const std::string& text, const std::string& option) {
  const auto bad = [&] {
    return Error{fmt::format("{} '{}': not a size (examples: 40G, 512M, 1T, 1048576)", option, text)};
  };
  if (text.empty() || !std::isdigit(static_cast<unsigned char>(text[0]))) return bad();
  char* end = nullptr;
  errno = 0;
  const unsigned long long number = std::strtoull(text.c_str(), &end, 10);
  if (errno != 0) return bad();
  std::string unit(end);
  for (const char* suffix : {"iB", "B"})
    if (unit.size() > 1 && unit.ends_with(suffix)) unit.resize(unit.size() - std::string(suffix).size());
  static constexpr std::pair<const char*, int> kUnits[] = {{"", 0}, {"K", 10}, {"M", 20}, {"G", 30}, {"T", 40},
                                                           {"k", 10}, {"m", 20}, {"g", 30}, {"t", 40}};
  for (const auto& [name, shift] : kUnits) {
    if (unit != name) continue;
    if (shift > 0 && number > (~0ull >> shift)) return bad();
    return static_cast<uint64_t>(number) << shift;
  }
  return bad();
}

AlignedBuffer::AlignedBuffer(size_t bytes) : data(nullptr), size(bytes) {
  void* memory = nullptr;
  if (::posix_memalign(&memory, kIoAlignment, bytes) != 0) std::abort();  // out of memory: nothing sensible to do
  data = static_cast<std::byte*>(memory);
}

AlignedBuffer::~AlignedBuffer() { std::free(data); }

std::string rate(uint64_t bytes, double seconds) {
  if (seconds <= 0) return "-";
  return fmt::format("{:.0f} MiB/s", static_cast<double>(bytes) / seconds / (1 << 20));
}

}  // namespace troy::cli
