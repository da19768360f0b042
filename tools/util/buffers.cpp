#include "buffers.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
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

uint64_t available_memory() {
  FILE* meminfo = std::fopen("/proc/meminfo", "re");
  if (meminfo == nullptr) return 0;
  char line[256];
  unsigned long long kib = 0;
  while (std::fgets(line, sizeof line, meminfo) != nullptr)
    if (std::sscanf(line, "MemAvailable: %llu kB", &kib) == 1) break;
  std::fclose(meminfo);
  return static_cast<uint64_t>(kib) << 10;
}

size_t buffers_for_memory(size_t wanted, size_t each, uint64_t available) {
  if (available == 0 || each == 0) return wanted;
  const uint64_t fits = available / 16 / each;
  return static_cast<size_t>(std::clamp<uint64_t>(fits, std::min<size_t>(2, wanted), wanted));
}

}  // namespace troy::cli
