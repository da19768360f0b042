#include "machine_state.h"
#include "file_descriptor.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <openssl/rand.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "digest.h"
#include "partitions.h"

namespace troy::cli {
namespace {

constexpr std::string_view kMagic = "TROYSTAT";
constexpr uint32_t kFormatVersion = 1;
// Layout of a record (little-endian): magic 0..8, version 8..12, sequence
// 16..24, key 24..56, flags 56..64 (bit 0: key_sent), highest_serial 64..72,
// report_counter 72..80, zeros, SHA-256 of bytes 0..4064 at 4064..4096.
constexpr size_t kHashAt = kStateRecordBytes - 32;

void put_u64(std::string& record, size_t at, uint64_t value) {
  for (int i = 0; i < 8; ++i) record[at + i] = static_cast<char>((value >> (8 * i)) & 0xff);
}
uint64_t get_u64(std::span<const std::byte> record, size_t at) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | std::to_integer<uint64_t>(record[at + i]);
  return value;
}

Result<uint64_t> device_size(const std::string& device, int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return Error{os_error(device, "cannot stat")};
  if (!S_ISBLK(st.st_mode)) return static_cast<uint64_t>(st.st_size);
  uint64_t size = 0;
  if (::ioctl(fd, BLKGETSIZE64, &size) != 0) return Error{os_error(device, "cannot read the size")};
  return size;
}

// Opens the device and checks the area lies on it.
Result<void> open_area(const std::string& device, uint64_t image_bytes, int flags, int& fd_out) {
  const int fd = ::open(device.c_str(), flags | O_CLOEXEC);
  if (fd < 0) return Error{os_error(device, "cannot open for the machine's state")};
  FileDescriptor owner(fd);
  TROY_ASSIGN(size, device_size(device, fd));
  std::string why;
  if (!state_fits(size, image_bytes, why)) return Error{fmt::format("{}: {}", device, why)};
  fd_out = ::dup(fd);
  if (fd_out < 0) return Error{os_error(device, "cannot open")};
  return success();
}

Result<void> read_exactly(const std::string& device, int fd, uint64_t offset, std::span<std::byte> out) {
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = ::pread(fd, out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error{os_error(device, fmt::format("cannot read at {}", offset + done))};
    if (n == 0) return Error{fmt::format("{}: ends before byte {}", device, offset + out.size())};
    done += static_cast<size_t>(n);
  }
  return success();
}

uint64_t slot_offset(uint64_t image_bytes, uint64_t slot) { return image_bytes + slot * kStateSlotSpacing; }

// Both slots' records, each nullopt when not valid.
Result<std::array<std::optional<MachineState>, 2>> read_slots(const std::string& device, int fd, uint64_t image_bytes) {
  std::array<std::optional<MachineState>, 2> slots;
  std::array<std::byte, kStateRecordBytes> record{};
  for (uint64_t slot = 0; slot < 2; ++slot) {
    TROY_TRY(read_exactly(device, fd, slot_offset(image_bytes, slot), record));
    slots[slot] = decode_state_record(record);
  }
  return slots;
}

}  // namespace

Result<MachineState> new_machine_state() {
  MachineState state;
  if (::RAND_bytes(state.key.data(), static_cast<int>(state.key.size())) != 1)
    return Error{"the random generator (RAND_bytes) failed: no key for this machine"};
  return state;
}

std::string encode_state_record(const MachineState& state) {
  std::string record(kStateRecordBytes, '\0');
  record.replace(0, kMagic.size(), kMagic);
  put_u64(record, 8, kFormatVersion);
  put_u64(record, 16, state.sequence);
  for (size_t i = 0; i < state.key.size(); ++i) record[24 + i] = static_cast<char>(state.key[i]);
  put_u64(record, 56, state.key_sent ? 1 : 0);
  put_u64(record, 64, state.highest_serial);
  put_u64(record, 72, state.report_counter);
  const Sha256 hash = sha256(std::as_bytes(std::span(record).first(kHashAt)));
  for (size_t i = 0; i < hash.size(); ++i) record[kHashAt + i] = static_cast<char>(hash[i]);
  return record;
}

std::optional<MachineState> decode_state_record(std::span<const std::byte> record) {
  if (record.size() != kStateRecordBytes) return std::nullopt;
  if (std::memcmp(record.data(), kMagic.data(), kMagic.size()) != 0) return std::nullopt;
  if (get_u64(record, 8) != kFormatVersion) return std::nullopt;
  const Sha256 hash = sha256(record.first(kHashAt));
  if (std::memcmp(hash.data(), record.data() + kHashAt, hash.size()) != 0) return std::nullopt;
  MachineState state;
  state.sequence = get_u64(record, 16);
  for (size_t i = 0; i < state.key.size(); ++i) state.key[i] = std::to_integer<uint8_t>(record[24 + i]);
  state.key_sent = (get_u64(record, 56) & 1) != 0;
  state.highest_serial = get_u64(record, 64);
  state.report_counter = get_u64(record, 72);
  return state;
}

bool state_fits(uint64_t disk_bytes, uint64_t image_bytes, std::string& why) {
  if (disk_bytes >= image_bytes && disk_bytes - image_bytes >= kStateAreaBytes) return true;
  why = fmt::format("the disk holds {} bytes, less than the image's {} plus the {} bytes of Troy's state: the state "
                    "cannot be kept (no rollback protection, reports unauthenticated)",
                    disk_bytes, image_bytes, kStateAreaBytes);
  return false;
}

Result<std::optional<MachineState>> read_machine_state(const std::string& device, uint64_t image_bytes) {
  int raw = -1;
  TROY_TRY(open_area(device, image_bytes, O_RDONLY, raw));
  FileDescriptor fd(raw);
  TROY_ASSIGN(slots, read_slots(device, fd.get(), image_bytes));
  std::optional<MachineState> newest;
  for (const auto& slot : slots)
    if (slot && (!newest || slot->sequence > newest->sequence)) newest = slot;
  return newest;
}

Result<void> check_state_area_free(const std::string& device, uint64_t image_bytes) {
  int raw = -1;
  TROY_TRY(open_area(device, image_bytes, O_RDONLY, raw));
  FileDescriptor fd(raw);
  const DiskReader reader = [&](uint64_t offset, std::span<std::byte> out) {
    return read_exactly(device, fd.get(), offset, out);
  };
  // Read as a disk of the image's size: a partition reaching past it is an error.
  auto table = read_partition_table(reader, image_bytes, 512);
  if (!table)
    return Error{fmt::format("{}: the area after the image may belong to a partition ({}); Troy's state is not "
                             "written there",
                             device, table.error().message)};
  return success();
}

Result<void> write_machine_state(const std::string& device, uint64_t image_bytes, MachineState& state) {
  int raw = -1;
  TROY_TRY(open_area(device, image_bytes, O_RDWR, raw));
  FileDescriptor fd(raw);
  TROY_ASSIGN(slots, read_slots(device, fd.get(), image_bytes));
  // The newest valid slot is kept; the other one is overwritten.
  uint64_t current_sequence = 0;
  uint64_t target = 0;
  for (uint64_t slot = 0; slot < 2; ++slot)
    if (slots[slot] && slots[slot]->sequence >= current_sequence) {
      current_sequence = slots[slot]->sequence;
      target = 1 - slot;
    }
  state.sequence = std::max(state.sequence, current_sequence) + 1;
  const std::string record = encode_state_record(state);
  const uint64_t offset = slot_offset(image_bytes, target);
  size_t done = 0;
  while (done < record.size()) {
    const ssize_t n = ::pwrite(fd.get(), record.data() + done, record.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Error{os_error(device, fmt::format("cannot write the machine's state at {}", offset))};
    done += static_cast<size_t>(n);
  }
  if (::fdatasync(fd.get()) != 0) return Error{os_error(device, "cannot flush the machine's state")};
  return success();
}

std::string key_hex(const MachineState& state) {
  std::string hex;
  for (const uint8_t byte : state.key) hex += fmt::format("{:02x}", byte);
  return hex;
}

}  // namespace troy::cli
