#include "digest.h"

#include <openssl/evp.h>

#include <cstdlib>

#include "text.h"

namespace troy::cli {

Sha256 sha256(std::span<const std::byte> bytes) {
  Sha256 digest{};
  unsigned int length = 0;
  // Fails only when libcrypto cannot allocate a context: nothing sensible to do.
  if (EVP_Digest(bytes.data(), bytes.size(), digest.data(), &length, EVP_sha256(), nullptr) != 1) std::abort();
  return digest;
}

std::string to_hex(const Sha256& digest) { return troy::to_hex(digest); }

}  // namespace troy::cli
