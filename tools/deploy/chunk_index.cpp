#include "chunk_index.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cstring>

#include "buffers.h"
#include "crc32c.h"
#include "integers.h"
#include "output.h"

namespace troy::cli {

namespace {

constexpr char kMagic[8] = {'T', 'R', 'O', 'Y', 'C', 'I', 'D', 'X'};
constexpr uint32_t kVersion = 1;

// The 64-byte header, little-endian (docs/chunk-index.md).
struct IndexHeader {
  char magic[8];
  ul32 version;
  ul32 piece_size;
  ul64 total_size;
  ul64 piece_count;
  ul32 unit_size;
  ul32 reserved1;
  ul64 unit_count;
  uint8_t reserved2[16];
};
static_assert(sizeof(IndexHeader) == 64);

constexpr size_t kEntryBytes = 32;
constexpr size_t kCrcBytes = 4;
constexpr size_t kTrailerBytes = 32;

uint64_t units_in(uint64_t length) { return (length + kChunkUnit - 1) / kChunkUnit; }

Error index_error(const std::string& name, const std::string& what) {
  return Error{fmt::format("{}: chunk index: {}", name, what)};
}

}  // namespace

uint64_t piece_count_for(uint64_t total_size, uint32_t piece_size) {
  return total_size / piece_size + (total_size % piece_size != 0 ? 1 : 0);
}

Result<void> check_piece_size(uint64_t piece_size, const std::string& what) {
  if (piece_size < kMinPieceSize || piece_size > kMaxPieceSize || !std::has_single_bit(piece_size))
    return Error{fmt::format("{}: piece size {} is not a power of two from 64 KiB to 4 MiB", what, piece_size)};
  return success();
}

uint32_t ChunkIndex::piece_length(size_t index) const {
  return static_cast<uint32_t>(std::min<uint64_t>(piece_size, total_size - piece_offset(index)));
}

bool ChunkIndex::is_zero(size_t index) const {
  const Sha256& sha = pieces[index];
  return std::all_of(sha.begin(), sha.end(), [](uint8_t byte) { return byte == 0; });
}

std::span<const uint32_t> ChunkIndex::units(size_t index) const {
  if (unit_size == 0 || is_zero(index)) return {};
  return std::span(unit_crcs).subspan(first_unit[index], units_in(piece_length(index)));
}

bool is_zero_bytes(std::span<const std::byte> bytes) {
  // Word at a time: this runs over every byte of every disk that is indexed.
  size_t i = 0;
  for (; i + 8 <= bytes.size(); i += 8) {
    uint64_t word;
    std::memcpy(&word, bytes.data() + i, 8);
    if (word != 0) return false;
  }
  for (; i < bytes.size(); i++)
    if (bytes[i] != std::byte{0}) return false;
  return true;
}

std::vector<uint32_t> unit_crcs_of(std::span<const std::byte> piece) {
  std::vector<uint32_t> crcs;
  crcs.reserve(units_in(piece.size()));
  for (size_t at = 0; at < piece.size(); at += kChunkUnit)
    crcs.push_back(crc32c(piece.subspan(at, std::min<size_t>(kChunkUnit, piece.size() - at))));
  return crcs;
}

void append_piece(ChunkIndex& index, std::span<const std::byte> bytes) {
  index.first_unit.push_back(index.unit_crcs.size());
  if (is_zero_bytes(bytes)) {
    index.pieces.push_back(Sha256{});
    return;
  }
  index.pieces.push_back(sha256(bytes));
  if (index.unit_size == 0) return;
  const auto crcs = unit_crcs_of(bytes);
  index.unit_crcs.insert(index.unit_crcs.end(), crcs.begin(), crcs.end());
}

std::vector<std::byte> serialize(const ChunkIndex& index) {
  IndexHeader header{};
  std::memcpy(header.magic, kMagic, sizeof kMagic);
  header.version = kVersion;
  header.piece_size = index.piece_size;
  header.total_size = index.total_size;
  header.piece_count = index.pieces.size();
  header.unit_size = index.unit_size;
  header.unit_count = index.unit_crcs.size();
  std::vector<std::byte> out(sizeof header);
  std::memcpy(out.data(), &header, sizeof header);
  for (const Sha256& sha : index.pieces) {
    const auto bytes = std::as_bytes(std::span(sha));
    out.insert(out.end(), bytes.begin(), bytes.end());
  }
  for (uint32_t crc : index.unit_crcs) {
    const ul32 stored = crc;
    const auto bytes = bytes_of(stored);
    out.insert(out.end(), bytes.begin(), bytes.end());
  }
  const Sha256 trailer = sha256(out);
  const auto bytes = std::as_bytes(std::span(trailer));
  out.insert(out.end(), bytes.begin(), bytes.end());
  return out;
}

Result<ChunkIndex> parse_chunk_index(std::span<const std::byte> bytes, const std::string& name) {
  IndexHeader header{};
  if (bytes.size() < sizeof header + kTrailerBytes)
    return index_error(name, fmt::format("file of {} bytes is shorter than the header and trailer ({} bytes): "
                                         "truncated or not an index", bytes.size(), sizeof header + kTrailerBytes));
  std::memcpy(&header, bytes.data(), sizeof header);
  if (std::memcmp(header.magic, kMagic, sizeof kMagic) != 0)
    return index_error(name, "magic is not TROYCIDX (not a troy chunk index)");
  if (header.version != kVersion)
    return index_error(name, fmt::format("version {} is not supported (this troy reads version {})",
                                         uint32_t{header.version}, kVersion));
  TROY_TRY(check_piece_size(header.piece_size, fmt::format("{}: chunk index: piece_size", name)));
  if (header.unit_size != kChunkUnit && header.unit_size != 0)
    return index_error(name, fmt::format("unit_size {} is neither 0 (no unit CRCs) nor {}", uint32_t{header.unit_size},
                                         kChunkUnit));
  const uint64_t total = header.total_size;
  const uint64_t count = header.piece_count;
  const uint64_t unit_count = header.unit_count;
  // Every count is bounded by the file's length before anything is
  // allocated or multiplied, so an absurd header cannot overflow or exhaust memory.
  const uint64_t room = bytes.size() - sizeof header - kTrailerBytes;
  if (count > room / kEntryBytes)
    return index_error(name, fmt::format("piece_count {} is more than the file's {} bytes after the header can hold "
                                         "(32 bytes per piece)", count, room));
  if (count != piece_count_for(total, header.piece_size))
    return index_error(name, fmt::format("piece_count {} does not cover total_size {} in pieces of {} (expected {})",
                                         count, total, uint32_t{header.piece_size},
                                         piece_count_for(total, header.piece_size)));
  if (unit_count != (room - count * kEntryBytes) / kCrcBytes || (room - count * kEntryBytes) % kCrcBytes != 0)
    return index_error(name, fmt::format("unit_count {} does not fit the file: {} bytes for {} pieces and 4 bytes per "
                                         "unit CRC (truncated or extended)", unit_count, bytes.size(), count));
  const auto body = bytes.first(bytes.size() - kTrailerBytes);
  const Sha256 actual = sha256(body);
  if (std::memcmp(actual.data(), bytes.data() + body.size(), kTrailerBytes) != 0)
    return index_error(name, "trailer sha256 does not match the bytes before it (damaged file)");
  if (std::any_of(std::begin(header.reserved2), std::end(header.reserved2), [](uint8_t b) { return b != 0; }) ||
      header.reserved1 != 0)
    return index_error(name, "reserved header bytes are not zero");

  ChunkIndex index;
  index.total_size = total;
  index.piece_size = header.piece_size;
  index.unit_size = header.unit_size;
  index.pieces.resize(count);
  index.first_unit.resize(count);
  const std::byte* entry = bytes.data() + sizeof header;
  uint64_t units_needed = 0;
  for (uint64_t i = 0; i < count; i++, entry += kEntryBytes) {
    std::memcpy(index.pieces[i].data(), entry, kEntryBytes);
    index.first_unit[i] = units_needed;
    if (!index.is_zero(i) && index.unit_size != 0) units_needed += units_in(index.piece_length(i));
  }
  if (units_needed != unit_count)
    return index_error(name, fmt::format("unit_count {} does not match the {} units of the pieces that are not zeros",
                                         unit_count, units_needed));
  index.unit_crcs.resize(unit_count);
  for (uint64_t i = 0; i < unit_count; i++, entry += kCrcBytes) {
    ul32 crc;
    std::memcpy(&crc, entry, kCrcBytes);
    index.unit_crcs[i] = crc;
  }
  return index;
}

Result<ChunkIndex> read_chunk_index(const std::string& path) {
  TROY_ASSIGN(file, PosixFile::open_read_only(path));
  if (file->size() > kMaxChunkIndexBytes)
    return index_error(path, fmt::format("file of {} bytes is larger than the {} an index may have", file->size(),
                                         kMaxChunkIndexBytes));
  std::vector<std::byte> bytes(file->size());
  TROY_TRY(file->read_at(0, bytes));
  return parse_chunk_index(bytes, path);
}

Result<void> write_chunk_index(const ChunkIndex& index, const std::string& path) {
  const auto bytes = serialize(index);
  TROY_ASSIGN(output, OutputFile::create(path, /*overwrite=*/true));
  TROY_TRY(output.write_at(0, bytes));
  return output.commit();
}

namespace {

using ReadPiece = std::function<Result<void>(uint64_t offset, std::span<std::byte> out)>;

Result<ChunkIndex> index_pieces(uint64_t total_size, uint32_t piece_size, const ReadPiece& read,
                                const PieceVisitor& visit, const IndexProgress& progress, bool unit_crcs) {
  TROY_TRY(check_piece_size(piece_size, "index"));
  ChunkIndex index;
  index.total_size = total_size;
  index.piece_size = piece_size;
  index.unit_size = unit_crcs ? kChunkUnit : 0;
  std::vector<std::byte> buffer(piece_size);
  const uint64_t count = piece_count_for(total_size, piece_size);
  for (uint64_t i = 0; i < count; i++) {
    const auto bytes = std::span(buffer).first(std::min<uint64_t>(piece_size, total_size - i * piece_size));
    TROY_TRY(read(i * piece_size, bytes));
    append_piece(index, bytes);
    if (visit && !index.is_zero(i)) TROY_TRY(visit(i, index.pieces[i], bytes));
    if (progress) progress(i * piece_size + bytes.size());
  }
  return index;
}

}  // namespace

Result<ChunkIndex> index_source(const Source& source, uint32_t piece_size, const PieceVisitor& visit,
                                const IndexProgress& progress, bool unit_crcs) {
  return index_pieces(
      source.size(), piece_size, [&](uint64_t offset, std::span<std::byte> out) { return source.read_at(offset, out); },
      visit, progress, unit_crcs);
}

Result<ChunkIndex> index_chain(const Chain& chain, uint32_t piece_size, const PieceVisitor& visit,
                               const IndexProgress& progress, bool unit_crcs) {
  return index_pieces(
      chain.virtual_size(), piece_size,
      [&](uint64_t offset, std::span<std::byte> out) -> Result<void> {
        // A range no layer holds reads as zeros without touching any data.
        TROY_ASSIGN(held, chain.holds_anything(offset, out.size()));
        if (!held) {
          std::fill(out.begin(), out.end(), std::byte{0});
          return success();
        }
        return chain.read(offset, out);
      },
      visit, progress, unit_crcs);
}

size_t units_of_length(uint64_t length) { return units_in(length); }

std::vector<std::byte> serialize_units(std::span<const uint32_t> crcs) {
  std::vector<std::byte> out;
  out.reserve(crcs.size() * kCrcBytes);
  for (uint32_t crc : crcs) {
    const ul32 stored = crc;
    const auto bytes = bytes_of(stored);
    out.insert(out.end(), bytes.begin(), bytes.end());
  }
  return out;
}

std::optional<std::vector<uint32_t>> parse_units(std::span<const std::byte> bytes, size_t units) {
  if (bytes.size() != units * kCrcBytes) return std::nullopt;
  std::vector<uint32_t> crcs(units);
  for (size_t i = 0; i < units; i++) {
    ul32 crc;
    std::memcpy(&crc, bytes.data() + i * kCrcBytes, kCrcBytes);
    crcs[i] = crc;
  }
  return crcs;
}

}  // namespace troy::cli
