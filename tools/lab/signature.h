// Ed25519 signatures of a lab's manifest, by OpenSSL's libcrypto (no
// hand-written crypto). Keys are PEM files as `openssl genpkey -algorithm
// ed25519` and `openssl pkey -pubout` write them; signatures travel as one
// line of base64 (the 64 raw bytes), which `openssl pkeyutl -verify -rawin`
// also accepts once decoded.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "result.h"

struct evp_pkey_st;  // OpenSSL's EVP_PKEY, as <openssl/types.h> declares it

namespace troy::cli {

struct KeyDeleter {
  void operator()(::evp_pkey_st* key) const;
};
using Key = std::unique_ptr<::evp_pkey_st, KeyDeleter>;

// An Ed25519 key from a PEM file: a private key, or with `public_only` a
// public key. A private key also verifies.
Result<Key> load_ed25519_key(const std::string& path, bool public_only);

// The private key must not be served, nor readable by anyone but its owner:
// who holds it signs what every machine writes. (troy publish, lab rollback
// and lab squash.) A key that does not exist passes: loading it names that.
Result<void> check_private_key_place(const std::string& key, const std::string& served);

// The signature of `message`, as base64 (no newline).
Result<std::string> sign(const Key& key, const std::string& key_path, std::span<const std::byte> message);

// Succeeds when `signature_base64` (surrounding white space ignored) is the
// key's signature of `message`; the error names `signature_path`.
Result<void> verify(const Key& key, std::span<const std::byte> message, const std::string& signature_base64,
                    const std::string& signature_path);

// A machine's report is authenticated with HMAC-SHA256 over the exact body
// bytes it sends, keyed by its own random key (machine_state.h); 64
// lower-case hex digits.
std::string hmac_sha256_hex(std::span<const uint8_t> key, std::string_view message);

// Compares two HMACs in a time that does not depend on where they differ.
bool same_hmac(std::string_view a, std::string_view b);

}  // namespace troy::cli
