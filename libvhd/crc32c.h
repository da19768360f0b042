// CRC-32C (Castagnoli), the checksum of every VHDX structure.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace troy {

// CRC-32C of `bytes` (reflected polynomial 0x82F63B78, initial value and final
// XOR 0xFFFFFFFF), so crc32c("123456789") == 0xE3069283.
uint32_t crc32c(std::span<const std::byte> bytes);

// The same, computed as if the 4 bytes at `field_offset` were zero: how VHDX
// checksums a structure that contains its own checksum field.
uint32_t crc32c_with_zeroed_field(std::span<const std::byte> bytes, size_t field_offset);

namespace detail {
// The two implementations, exposed so tests can check they agree.
uint32_t crc32c_update_portable(uint32_t state, std::span<const std::byte> bytes);
uint32_t crc32c_update_hardware(uint32_t state, std::span<const std::byte> bytes);
bool crc32c_hardware_available();
}  // namespace detail

}  // namespace troy
