// Endian-explicit integer types for on-disk structures.
//
// VHD stores every field big-endian, VHDX little-endian. Declaring a struct
// field as `ub32` or `ul64` makes the byte order part of the type, so a read
// of a field can never forget its byte swap. The types have alignment 1 and
// no padding, so on-disk structs are plain aggregates with a static_assert on
// their size.
#pragma once

#include <cstddef>
#include <cstdint>

namespace troy {

template <typename T, int Bytes, bool BigEndian>
class EndianInt {
 public:
  EndianInt() = default;
  EndianInt(T value) { store(value); }  // NOLINT: implicit by design

  operator T() const { return load(); }  // NOLINT: implicit by design
  EndianInt& operator=(T value) {
    store(value);
    return *this;
  }

 private:
  T load() const {
    T value = 0;
    for (int i = 0; i < Bytes; i++) {
      const int shift = BigEndian ? 8 * (Bytes - 1 - i) : 8 * i;
      value |= static_cast<T>(static_cast<T>(bytes_[i]) << shift);
    }
    return value;
  }
  void store(T value) {
    for (int i = 0; i < Bytes; i++) {
      const int shift = BigEndian ? 8 * (Bytes - 1 - i) : 8 * i;
      bytes_[i] = static_cast<uint8_t>(value >> shift);
    }
  }

  uint8_t bytes_[Bytes] = {};
};

using ub16 = EndianInt<uint16_t, 2, true>;
using ub32 = EndianInt<uint32_t, 4, true>;
using ub64 = EndianInt<uint64_t, 8, true>;
using ul16 = EndianInt<uint16_t, 2, false>;
using ul32 = EndianInt<uint32_t, 4, false>;
using ul64 = EndianInt<uint64_t, 8, false>;

static_assert(sizeof(ub32) == 4 && alignof(ub32) == 1);
static_assert(sizeof(ul64) == 8 && alignof(ul64) == 1);

}  // namespace troy
