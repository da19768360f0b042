#include "vhdx_log.h"

#include <algorithm>
#include <cstring>
#include <optional>

#include <fmt/format.h>

#include "crc32c.h"
#include "layout.h"

namespace troy::vhdx {
namespace {

constexpr size_t kChecksumOffset = 4;

uint64_t descriptor_sectors(uint64_t count) {
  return (sizeof(LogEntryHeader) + count * sizeof(LogDescriptor) + kLogSectorSize - 1) / kLogSectorSize;
}

// The log as a ring of 4 KiB sectors held in memory.
class LogRing {
 public:
  explicit LogRing(std::vector<std::byte> bytes) : bytes_(std::move(bytes)) {}
  uint64_t length() const { return bytes_.size(); }
  // `count` bytes starting at ring offset `offset`, wrapping at the end.
  std::vector<std::byte> copy(uint64_t offset, uint64_t count) const {
    std::vector<std::byte> out(count);
    for (uint64_t done = 0; done < count;) {
      const uint64_t at = (offset + done) % length();
      const uint64_t piece = std::min(count - done, length() - at);
      std::memcpy(out.data() + done, bytes_.data() + at, piece);
      done += piece;
    }
    return out;
  }

 private:
  std::vector<std::byte> bytes_;
};

// A log entry that passed every validity rule of [MS-VHDX] 2.3.1.
struct Entry {
  uint64_t offset = 0;  // in the ring
  LogEntryHeader header{};
  std::vector<LogWrite> writes;
};

bool descriptor_ok(const LogDescriptor& descriptor, uint64_t sequence) {
  if (descriptor.sequence_number != sequence) return false;
  if (descriptor.file_offset % kLogSectorSize != 0) return false;
  if (descriptor.signature == kZeroDescriptorSignature)
    return descriptor.leading_bytes_or_zero_length % kLogSectorSize == 0;
  return descriptor.signature == kDataDescriptorSignature;
}

// The 4 KiB a data descriptor writes: its 8 leading bytes, the sector's 4084
// and its 4 trailing bytes, each exactly as stored.
std::vector<std::byte> assemble_sector(const LogDescriptor& descriptor, const LogDataSector& sector) {
  std::vector<std::byte> data(kLogSectorSize);
  std::memcpy(data.data(), &descriptor.leading_bytes_or_zero_length, 8);
  std::memcpy(data.data() + 8, sector.data, sizeof sector.data);
  std::memcpy(data.data() + 8 + sizeof sector.data, &descriptor.trailing_bytes, 4);
  return data;
}

// Decodes the descriptors and data sectors of an entry whose header and
// checksum are valid; nullopt when any of them breaks a rule.
std::optional<std::vector<LogWrite>> decode_writes(const std::vector<std::byte>& entry, const LogEntryHeader& header) {
  const uint64_t count = header.descriptor_count;
  const uint64_t first_data = descriptor_sectors(count) * kLogSectorSize;
  std::vector<LogWrite> writes;
  uint64_t data_at = first_data;
  for (uint64_t i = 0; i < count; i++) {
    LogDescriptor descriptor;
    std::memcpy(&descriptor, entry.data() + sizeof(LogEntryHeader) + i * sizeof(LogDescriptor), sizeof descriptor);
    if (!descriptor_ok(descriptor, header.sequence_number)) return std::nullopt;
    if (descriptor.signature == kZeroDescriptorSignature) {
      writes.push_back({descriptor.file_offset, descriptor.leading_bytes_or_zero_length, {}});
      continue;
    }
    if (data_at + kLogSectorSize > entry.size()) return std::nullopt;
    LogDataSector sector;
    std::memcpy(&sector, entry.data() + data_at, sizeof sector);
    data_at += kLogSectorSize;
    const uint64_t sequence = uint64_t{sector.sequence_high} << 32 | uint32_t{sector.sequence_low};
    if (sector.signature != kDataSectorSignature || sequence != header.sequence_number) return std::nullopt;
    writes.push_back({descriptor.file_offset, kLogSectorSize, assemble_sector(descriptor, sector)});
  }
  // Every sector of the entry must be accounted for.
  if (data_at != entry.size()) return std::nullopt;
  return writes;
}

// Reads and validates the entry at ring offset `offset`. Checking an entry's
// checksum costs its length from `budget`; when the budget is spent, no more
// entries are checked and `exhausted` is set.
std::optional<Entry> read_entry(const LogRing& ring, uint64_t offset, const Guid& log_guid, uint64_t& budget,
                                bool& exhausted) {
  Entry entry;
  entry.offset = offset;
  const std::vector<std::byte> first = ring.copy(offset, sizeof(LogEntryHeader));
  std::memcpy(&entry.header, first.data(), sizeof entry.header);
  const LogEntryHeader& h = entry.header;
  if (h.signature != kLogEntrySignature || h.sequence_number == 0 || h.log_guid != log_guid) return std::nullopt;
  if (h.entry_length == 0 || h.entry_length % kLogSectorSize != 0 || h.entry_length > ring.length()) return std::nullopt;
  if (h.tail % kLogSectorSize != 0 || h.tail >= ring.length()) return std::nullopt;
  if (descriptor_sectors(h.descriptor_count) * kLogSectorSize > h.entry_length) return std::nullopt;
  if (h.entry_length > budget) {
    exhausted = true;
    return std::nullopt;
  }
  budget -= h.entry_length;
  const std::vector<std::byte> bytes = ring.copy(offset, h.entry_length);
  if (crc32c_with_zeroed_field(bytes, kChecksumOffset) != h.checksum) return std::nullopt;
  auto writes = decode_writes(bytes, h);
  if (!writes) return std::nullopt;
  entry.writes = std::move(*writes);
  return entry;
}

// Entries at every 4 KiB offset of the ring, validated once each. Entries of
// a real log do not overlap, so checking them all costs about the log's
// length; a crafted log of overlapping entries would cost the square of it
// in time and memory, so the work is bounded to a few times the log length.
class EntryCache {
 public:
  EntryCache(const LogRing& ring, const Guid& log_guid)
      : ring_(ring), log_guid_(log_guid), budget_(8 * ring.length()), entries_(ring.length() / kLogSectorSize) {}
  const Entry* at(uint64_t offset) {
    auto& slot = entries_[offset / kLogSectorSize];
    if (!slot) slot = read_entry(ring_, offset, log_guid_, budget_, exhausted_);
    return slot->has_value() ? &**slot : nullptr;
  }
  bool exhausted() const { return exhausted_; }

 private:
  const LogRing& ring_;
  Guid log_guid_;
  uint64_t budget_;
  bool exhausted_ = false;
  std::vector<std::optional<std::optional<Entry>>> entries_;
};

// The longest run of entries from `start` that follow one another in the ring
// with consecutive sequence numbers, never longer than the ring.
std::vector<const Entry*> sequence_from(EntryCache& cache, uint64_t start, uint64_t ring_length) {
  std::vector<const Entry*> sequence;
  uint64_t offset = start;
  uint64_t used = 0;
  while (const Entry* entry = cache.at(offset)) {
    if (!sequence.empty() && entry->header.sequence_number != sequence.back()->header.sequence_number + 1) break;
    if (used + entry->header.entry_length > ring_length) break;
    used += entry->header.entry_length;
    sequence.push_back(entry);
    offset = (offset + entry->header.entry_length) % ring_length;
  }
  return sequence;
}

// The index of the entry the head's Tail names, or nullopt when the tail lies
// outside the sequence (then the sequence is not valid).
std::optional<size_t> tail_index(const std::vector<const Entry*>& sequence) {
  const uint64_t tail = sequence.back()->header.tail;
  for (size_t i = 0; i < sequence.size(); i++)
    if (sequence[i]->offset == tail) return i;
  return std::nullopt;
}

}  // namespace

Result<LogReplay> find_log_replay(const Source& file, const Header& header, std::string& remark) {
  LogReplay replay;
  if (header.log_guid == Guid{}) return replay;
  const uint64_t offset = header.log_offset;
  const uint64_t length = header.log_length;
  if (length == 0) {
    remark = fmt::format("{}: header LogGuid is set but LogLength is 0; nothing to replay", file.name());
    return replay;
  }
  if (length % MiB != 0 || offset < MiB || offset % MiB != 0)
    return Error{fmt::format("{}: header LogOffset {:#x} / LogLength {:#x}: not a log of whole MiB after the "
                             "header section",
                             file.name(), offset, length)};
  if (length > kMaxLogLength)
    return Error{fmt::format("{}: header LogLength {} is larger than the {} MiB Troy accepts", file.name(), length,
                             kMaxLogLength / MiB)};
  if (!inside_file(file.size(), offset, length))
    return Error{fmt::format("{}: log at {:#x}, {} bytes, extends past the end of the file ({} bytes)", file.name(),
                             offset, length, file.size())};
  std::vector<std::byte> bytes(length);
  TROY_TRY(file.read_at(offset, bytes));
  const LogRing ring(std::move(bytes));
  EntryCache cache(ring, header.log_guid);

  // The active sequence: of all valid sequences (each contains the entry its
  // head names as tail), the one whose head has the highest sequence number.
  std::vector<const Entry*> active;
  size_t active_tail = 0;
  for (uint64_t start = 0; start < length; start += kLogSectorSize) {
    std::vector<const Entry*> sequence = sequence_from(cache, start, length);
    if (sequence.empty()) continue;
    const std::optional<size_t> tail = tail_index(sequence);
    if (!tail) continue;
    if (active.empty() || sequence.back()->header.sequence_number > active.back()->header.sequence_number) {
      active = std::move(sequence);
      active_tail = *tail;
    }
  }
  if (cache.exhausted())
    return Error{fmt::format("{}: log: its entries overlap far more than a real log's do; refusing to scan further",
                             file.name())};
  if (active.empty()) {
    remark = fmt::format("{}: log: LogGuid is set but the log holds no valid sequence; nothing to replay",
                         file.name());
    return replay;
  }
  const LogEntryHeader& head = active.back()->header;
  replay.needed = true;
  replay.first_sequence = active[active_tail]->header.sequence_number;
  replay.last_sequence = head.sequence_number;
  replay.entries = static_cast<uint32_t>(active.size() - active_tail);
  replay.tail_offset = static_cast<uint32_t>(active[active_tail]->offset);
  replay.head_offset = static_cast<uint32_t>(active.back()->offset);
  replay.flushed_file_offset = head.flushed_file_offset;
  replay.last_file_offset = head.last_file_offset;
  for (size_t i = active_tail; i < active.size(); i++) {
    const LogEntryHeader& entry = active[i]->header;
    if (file.size() < entry.flushed_file_offset)
      return Error{fmt::format("{}: log entry {} FlushedFileOffset {:#x} is past the end of the file ({} bytes): "
                               "the file was truncated",
                               file.name(), uint64_t{entry.sequence_number}, uint64_t{entry.flushed_file_offset},
                               file.size())};
    for (const LogWrite& write : active[i]->writes) {
      if (write.offset < kHeaderSectionSize)
        return Error{fmt::format("{}: log entry {} writes at {:#x}, inside the header section, which the log "
                                 "never updates",
                                 file.name(), uint64_t{active[i]->header.sequence_number}, write.offset)};
      if (write.length > kMaxVirtualSize || write.offset > kMaxVirtualSize)
        return Error{fmt::format("{}: log entry {} writes {} bytes at {:#x}: absurd size", file.name(),
                                 uint64_t{active[i]->header.sequence_number}, write.length, write.offset)};
      replay.writes.push_back(write);
    }
  }
  return replay;
}

ReplayedSource::ReplayedSource(std::unique_ptr<Source> base, LogReplay replay)
    : base_(std::move(base)), replay_(std::move(replay)) {
  size_ = std::max(base_->size(), replay_.last_file_offset);
  for (const LogWrite& write : replay_.writes) size_ = std::max(size_, write.offset + write.length);
}

Result<void> ReplayedSource::read_at(uint64_t offset, std::span<std::byte> out) const {
  if (out.empty()) return success();
  if (offset > size_ || out.size() > size_ - offset)
    return Error{fmt::format("{}: read of {} bytes at offset {} is past the end of the file ({} bytes after log "
                             "replay)",
                             name(), out.size(), offset, size_)};
  const uint64_t stored = offset >= base_->size() ? 0 : std::min<uint64_t>(out.size(), base_->size() - offset);
  TROY_TRY(base_->read_at(offset, out.first(stored)));
  std::memset(out.data() + stored, 0, out.size() - stored);
  const uint64_t end = offset + out.size();
  for (const LogWrite& write : replay_.writes) {
    const uint64_t from = std::max(offset, write.offset);
    const uint64_t to = std::min(end, write.offset + write.length);
    if (from >= to) continue;
    std::byte* target = out.data() + (from - offset);
    if (write.data.empty()) std::memset(target, 0, to - from);
    else std::memcpy(target, write.data.data() + (from - write.offset), to - from);
  }
  return success();
}

}  // namespace troy::vhdx
