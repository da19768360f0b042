#include "held_table.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "integers.h"
#include "io.h"

namespace troy::cli {

namespace {

constexpr char kHeldMagic[8] = {'T', 'R', 'O', 'Y', 'H', 'E', 'L', 'D'};
constexpr uint32_t kHeldVersion = 1;
constexpr uint64_t kMaxHeldTableBytes = 1ull << 30;

struct TableHeader {
  char magic[8];
  ul32 version;
  ul32 piece_size;
  ul64 total_size;
  ul32 version_count;
  ul32 reserved1;
  ul64 row_count;
  uint8_t reserved2[24];
};
static_assert(sizeof(TableHeader) == 64);

Error table_error(const std::string& name, const std::string& what) {
  return Error{fmt::format("{}: held table: {}", name, what)};
}

}  // namespace

uint64_t HeldTable::piece_length(size_t row) const {
  return std::min<uint64_t>(piece_size, total_size - pieces[row] * piece_size);
}

Result<HeldTable> make_held_table(std::span<const ChunkIndex> versions, std::span<const std::string> names) {
  if (versions.empty()) return Error{"held table: no version"};
  const ChunkIndex& base = versions.front();
  for (size_t k = 1; k < versions.size(); k++)
    if (versions[k].total_size != base.total_size || versions[k].piece_size != base.piece_size)
      return Error{fmt::format("{}: content index of {} bytes in pieces of {}, the base's is {} in pieces of {}",
                               names[k], versions[k].total_size, versions[k].piece_size, base.total_size,
                               base.piece_size)};
  HeldTable table;
  table.total_size = base.total_size;
  table.piece_size = base.piece_size;
  table.versions = static_cast<uint32_t>(versions.size());
  for (size_t i = 0; i < base.piece_count(); i++) {
    const bool differs = std::any_of(versions.begin(), versions.end(),
                                     [&](const ChunkIndex& v) { return v.pieces[i] != base.pieces[i]; });
    if (!differs) continue;
    table.pieces.push_back(i);
    for (const ChunkIndex& v : versions) table.hashes.push_back(v.pieces[i]);
  }
  return table;
}

std::vector<std::byte> serialize(const HeldTable& table) {
  TableHeader header{};
  std::memcpy(header.magic, kHeldMagic, sizeof kHeldMagic);
  header.version = kHeldVersion;
  header.piece_size = table.piece_size;
  header.total_size = table.total_size;
  header.version_count = table.versions;
  header.row_count = table.pieces.size();
  std::vector<std::byte> out(sizeof header);
  std::memcpy(out.data(), &header, sizeof header);
  for (uint64_t piece : table.pieces) {
    const ul64 stored = piece;
    const auto bytes = bytes_of(stored);
    out.insert(out.end(), bytes.begin(), bytes.end());
  }
  for (const Sha256& sha : table.hashes) {
    const auto bytes = std::as_bytes(std::span(sha));
    out.insert(out.end(), bytes.begin(), bytes.end());
  }
  const Sha256 trailer = sha256(out);
  const auto bytes = std::as_bytes(std::span(trailer));
  out.insert(out.end(), bytes.begin(), bytes.end());
  return out;
}

Result<HeldTable> parse_held_table(std::span<const std::byte> bytes, const std::string& name) {
  TableHeader header{};
  if (bytes.size() < sizeof header + 32)
    return table_error(name, fmt::format("file of {} bytes is shorter than a header and trailer", bytes.size()));
  std::memcpy(&header, bytes.data(), sizeof header);
  if (std::memcmp(header.magic, kHeldMagic, sizeof kHeldMagic) != 0) return table_error(name, "magic is not TROYHELD");
  if (header.version != kHeldVersion) return table_error(name, fmt::format("version {} is not 1", uint32_t{header.version}));
  TROY_TRY(check_piece_size(header.piece_size, fmt::format("{}: held table: piece_size", name)));
  const uint64_t versions = header.version_count;
  const uint64_t rows = header.row_count;
  const uint64_t room = bytes.size() - sizeof header - 32;
  if (versions == 0 || versions > 100000) return table_error(name, fmt::format("version_count {} is absurd", versions));
  const uint64_t row_bytes = 8 + 32 * versions;
  if (rows > room / row_bytes || rows * row_bytes != room)
    return table_error(name, fmt::format("row_count {} of {} versions does not fit the file's {} bytes (truncated or "
                                         "extended)", rows, versions, bytes.size()));
  const auto body = bytes.first(bytes.size() - 32);
  const Sha256 actual = sha256(body);
  if (std::memcmp(actual.data(), bytes.data() + body.size(), 32) != 0)
    return table_error(name, "trailer sha256 does not match the bytes before it (damaged file)");
  HeldTable table;
  table.total_size = header.total_size;
  table.piece_size = header.piece_size;
  table.versions = static_cast<uint32_t>(versions);
  const uint64_t piece_count = piece_count_for(table.total_size, table.piece_size);
  const std::byte* at = bytes.data() + sizeof header;
  for (uint64_t row = 0; row < rows; row++, at += 8) {
    ul64 piece;
    std::memcpy(&piece, at, 8);
    if (piece >= piece_count || (!table.pieces.empty() && piece <= table.pieces.back()))
      return table_error(name, fmt::format("row {}: piece {} is past the last piece {} or not increasing", row,
                                           uint64_t{piece}, piece_count));
    table.pieces.push_back(piece);
  }
  table.hashes.resize(rows * versions);
  // No rows (every piece of the newest held by no older version alike, as
  // after a squash): no copy, since memcpy must not get a null pointer.
  if (!table.hashes.empty()) std::memcpy(table.hashes.data(), at, rows * versions * 32);
  return table;
}

Result<HeldTable> read_held_table(const std::string& path) {
  TROY_ASSIGN(file, PosixFile::open_read_only(path));
  if (file->size() > kMaxHeldTableBytes)
    return table_error(path, fmt::format("file of {} bytes is larger than a held table may be", file->size()));
  std::vector<std::byte> bytes(file->size());
  TROY_TRY(file->read_at(0, bytes));
  return parse_held_table(bytes, path);
}

Result<std::vector<Sha256>> hash_held_pieces(const HeldTable& table, SyncDisk& disk) {
  if (disk.size() < table.total_size)
    return Error{fmt::format("{}: the disk has {} bytes, fewer than the lab's {}", disk.name(), disk.size(),
                             table.total_size)};
  std::vector<Sha256> hashes;
  std::vector<std::byte> buffer(table.piece_size);
  Sha256Hasher hasher;
  for (size_t row = 0; row < table.pieces.size(); row++) {
    const auto piece = std::span(buffer).first(table.piece_length(row));
    TROY_TRY(disk.read(table.pieces[row] * table.piece_size, piece));
    hashes.push_back(is_zero_bytes(piece) ? Sha256{} : hasher(piece));
  }
  return hashes;
}

std::optional<size_t> held_by_content(const HeldTable& table, std::span<const Sha256> disk) {
  for (size_t k = table.versions; k-- > 0;) {
    bool all = true;
    for (size_t row = 0; row < table.pieces.size() && all; row++) all = disk[row] == table.at(row, k);
    if (all) return k;
  }
  return std::nullopt;
}

}  // namespace troy::cli
