// SHA-256 of a byte range, by OpenSSL's libcrypto (no hand-written crypto).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace troy::cli {

using Sha256 = std::array<uint8_t, 32>;

Sha256 sha256(std::span<const std::byte> bytes);
std::string to_hex(const Sha256& digest);

}  // namespace troy::cli
