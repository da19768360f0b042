// SHA-256 of a byte range, by OpenSSL's libcrypto (no hand-written crypto).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

// OpenSSL's types, declared as <openssl/types.h> does, so this header needs no OpenSSL include.
struct evp_md_ctx_st;
struct evp_md_st;

namespace troy::cli {

using Sha256 = std::array<uint8_t, 32>;

Sha256 sha256(std::span<const std::byte> bytes);

// For hashing many small ranges: one context, reused (sha256() sets one up
// per call, which costs more than hashing 4 KiB).
class Sha256Hasher {
 public:
  Sha256Hasher();
  ~Sha256Hasher();
  Sha256Hasher(const Sha256Hasher&) = delete;
  Sha256Hasher& operator=(const Sha256Hasher&) = delete;
  Sha256 operator()(std::span<const std::byte> bytes);
  // A long input in pieces: start(), update() for each, finish().
  void start();
  void update(std::span<const std::byte> bytes);
  Sha256 finish();

 private:
  ::evp_md_ctx_st* context_;
  ::evp_md_st* algorithm_;
};
std::string to_hex(const Sha256& digest);

}  // namespace troy::cli
