// A classroom machine's own Troy state, kept on its lab disk OUTSIDE the
// image: in the 1 MiB right after the image's virtual size (the manifest's
// disk-size), which no apply ever writes (apply writes below the image's
// virtual size only). It holds what the boot payload must remember across
// boots and cannot take from the network:
//
//   key             32 random bytes (RAND_bytes): the machine's report key;
//                   the server learns it on first contact (reports are
//                   authenticated with HMAC-SHA256, signature.h)
//   key_sent        the server accepted a report carrying the key: later
//                   reports carry only their HMAC
//   highest_serial  the highest manifest serial this machine accepted: an
//                   older (replayed) manifest is refused
//   report_counter  each report carries the next one: a replayed report is
//                   refused by the server
//
// Why not the last 1 MiB of the disk: a firmware or Windows may move the
// GPT's backup header to the disk's very end. Why not inside the image:
// the initrd is served to anyone, so a key in it is no secret, and a disk
// restored from the image would lose it.
//
// On the disk: two copies (slots) of one 4096-byte record, at IMAGE_SIZE
// and IMAGE_SIZE + 64 KiB. Each record: "TROYSTAT" magic, format version 1,
// a sequence number, the fields, and a SHA-256 of everything before it.
// A write goes to the slot NOT holding the newest record (sequence + 1, then
// fdatasync): a power cut in the middle leaves the other slot, the previous
// state, intact. Reading takes the valid record with the highest sequence.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "result.h"

namespace troy::cli {

inline constexpr uint64_t kStateAreaBytes = 1 << 20;
inline constexpr uint64_t kStateRecordBytes = 4096;
inline constexpr uint64_t kStateSlotSpacing = 64 << 10;

struct MachineState {
  uint64_t sequence = 0;  // which write this is; the newest valid copy wins
  std::array<uint8_t, 32> key{};
  bool key_sent = false;
  uint64_t highest_serial = 0;
  uint64_t report_counter = 0;
};

// A new state with a fresh random key; an error only when the system's
// random generator fails.
Result<MachineState> new_machine_state();

// One 4096-byte record, and back; nullopt for anything that is not a whole,
// valid record of this format (wrong magic, version or hash).
std::string encode_state_record(const MachineState& state);
std::optional<MachineState> decode_state_record(std::span<const std::byte> record);

// Whether a disk of `disk_bytes` has room for the state beyond an image of
// `image_bytes`; when not, `why` says so in words for the screen and report.
bool state_fits(uint64_t disk_bytes, uint64_t image_bytes, std::string& why);

// The state on `device` (a block device or, in tests, a file) beyond an image
// of `image_bytes`. nullopt when neither slot holds a valid record (a disk
// never used by this Troy). An error when the device cannot be read or is
// smaller than image + kStateAreaBytes.
Result<std::optional<MachineState>> read_machine_state(const std::string& device, uint64_t image_bytes);

// Checks the area may be written for the first time: the partition table at
// the disk's start (512-byte sectors) must end inside the image, so that no
// partition (Windows extended into the free space) owns the area.
Result<void> check_state_area_free(const std::string& device, uint64_t image_bytes);

// Writes `state` with sequence + 1 into the slot not holding the current
// record, and flushes it; `state.sequence` is updated.
Result<void> write_machine_state(const std::string& device, uint64_t image_bytes, MachineState& state);

// The key as 64 lower-case hex digits.
std::string key_hex(const MachineState& state);

}  // namespace troy::cli
