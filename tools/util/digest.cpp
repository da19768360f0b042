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

Sha256Hasher::Sha256Hasher()
    : context_(EVP_MD_CTX_new()), algorithm_(EVP_MD_fetch(nullptr, "SHA256", nullptr)) {
  if (context_ == nullptr || algorithm_ == nullptr) std::abort();
}

Sha256Hasher::~Sha256Hasher() {
  EVP_MD_free(algorithm_);
  EVP_MD_CTX_free(context_);
}

Sha256 Sha256Hasher::operator()(std::span<const std::byte> bytes) {
  start();
  update(bytes);
  return finish();
}

// These fail only when libcrypto cannot allocate: nothing sensible to do.
void Sha256Hasher::start() {
  if (EVP_DigestInit_ex(context_, algorithm_, nullptr) != 1) std::abort();
}

void Sha256Hasher::update(std::span<const std::byte> bytes) {
  if (EVP_DigestUpdate(context_, bytes.data(), bytes.size()) != 1) std::abort();
}

Sha256 Sha256Hasher::finish() {
  Sha256 digest{};
  unsigned int length = 0;
  if (EVP_DigestFinal_ex(context_, digest.data(), &length) != 1) std::abort();
  return digest;
}

std::string to_hex(const Sha256& digest) { return troy::to_hex(digest); }

}  // namespace troy::cli
