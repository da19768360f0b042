#include "random.h"

#include <sys/random.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace troy {

Result<Guid> random_guid() {
  Guid guid{};
  size_t done = 0;
  while (done < guid.size()) {
    const ssize_t n = ::getrandom(guid.data() + done, guid.size() - done, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Error{fmt::format("cannot read random bytes for a new GUID: {}", std::strerror(errno))};
    done += static_cast<size_t>(n);
  }
  guid[7] = static_cast<uint8_t>((guid[7] & 0x0f) | 0x40);  // version 4, in the stored (little-endian) Data3
  guid[8] = static_cast<uint8_t>((guid[8] & 0x3f) | 0x80);  // RFC 4122 variant
  return guid;
}

}  // namespace troy
