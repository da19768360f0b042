#include "fingerprint.h"

#include <fcntl.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <string_view>

#include <fmt/format.h>

#include "chain_map.h"
#include "io.h"
#include "progress.h"
#include "read_ahead.h"

namespace troy::cli {
namespace {

constexpr std::string_view kFingerprintMagic = "troy-fingerprint 2";
constexpr size_t kHexPerUnit = 2 * sizeof(UnitHash);

UnitHash first_eight_bytes(const Sha256& digest) {
  UnitHash value = 0;
  for (size_t i = 0; i < sizeof(UnitHash); i++) value = value << 8 | digest[i];
  return value;
}

size_t units_in(const ByteRange& range) {
  if (range.length == 0) return 0;
  return (range.end() - 1) / kFingerprintUnit - range.offset / kFingerprintUnit + 1;
}

void append_hex(std::string& out, const std::vector<UnitHash>& hashes) {
  for (UnitHash hash : hashes) out += fmt::format("{:016x}", hash);
}

// `text` must be exactly `count` units of hex, lower case.
bool parse_units(std::string_view text, size_t count, std::vector<UnitHash>& out) {
  if (text.size() != count * kHexPerUnit) return false;
  out.resize(count);
  for (size_t i = 0; i < count; i++) {
    const char* first = text.data() + i * kHexPerUnit;
    if (std::any_of(first, first + kHexPerUnit, [](char c) { return (c >= 'A' && c <= 'F'); })) return false;
    const auto [end, error] = std::from_chars(first, first + kHexPerUnit, out[i], 16);
    if (error != std::errc{} || end != first + kHexPerUnit) return false;
  }
  return true;
}

std::string body_of(const Fingerprint& fingerprint) {
  std::string body = fmt::format("{}\nimage-id {}\nvirtual-size {}\nunit {}\npieces {}\n", kFingerprintMagic, fingerprint.image_id,
                                 fingerprint.virtual_size, kFingerprintUnit, fingerprint.pieces.size());
  for (const FingerprintPiece& piece : fingerprint.pieces) {
    body += fmt::format("{} {} ", piece.range.offset, piece.range.length);
    append_hex(body, piece.base);
    body += ' ';
    append_hex(body, piece.updated);
    body += '\n';
  }
  return body;
}

// The next line of `text` from `at` (without its newline); false at the end.
bool next_line(std::string_view text, size_t& at, std::string_view& line) {
  if (at >= text.size()) return false;
  const size_t end = text.find('\n', at);
  if (end == std::string_view::npos) return false;  // every line ends with a newline
  line = text.substr(at, end - at);
  at = end + 1;
  return true;
}

// "WORD NUMBER" into `value`.
bool keyed_number(std::string_view line, std::string_view word, uint64_t& value) {
  if (line.size() <= word.size() + 1 || line.substr(0, word.size()) != word || line[word.size()] != ' ') return false;
  const std::string_view number = line.substr(word.size() + 1);
  const auto [end, error] = std::from_chars(number.data(), number.data() + number.size(), value);
  return error == std::errc{} && end == number.data() + number.size();
}

// "OFFSET LENGTH BASE NEW".
bool parse_piece(std::string_view line, FingerprintPiece& piece) {
  std::string_view fields[4];
  for (auto& field : fields) {
    const size_t space = line.find(' ');
    field = line.substr(0, space);
    line = space == std::string_view::npos ? std::string_view() : line.substr(space + 1);
  }
  if (!line.empty()) return false;
  for (int i = 0; i < 2; i++) {
    uint64_t& value = i == 0 ? piece.range.offset : piece.range.length;
    const auto [end, error] = std::from_chars(fields[i].data(), fields[i].data() + fields[i].size(), value);
    if (error != std::errc{} || end != fields[i].data() + fields[i].size()) return false;
  }
  const size_t units = units_in(piece.range);
  return piece.range.length > 0 && parse_units(fields[2], units, piece.base) && parse_units(fields[3], units, piece.updated);
}

}  // namespace

std::vector<UnitHash> unit_hashes(uint64_t offset, std::span<const std::byte> bytes) {
  Sha256Hasher hash;
  std::vector<UnitHash> hashes;
  hashes.reserve(units_in({offset, bytes.size()}));
  for (size_t at = 0; at < bytes.size();) {
    const size_t length = std::min<uint64_t>(bytes.size() - at, kFingerprintUnit - (offset + at) % kFingerprintUnit);
    hashes.push_back(first_eight_bytes(hash(bytes.subspan(at, length))));
    at += length;
  }
  return hashes;
}

PieceVerdict classify(const FingerprintPiece& piece, std::span<const std::byte> disk) {
  const std::vector<UnitHash> held = unit_hashes(piece.range.offset, disk);
  bool all_new = true, all_base = true;
  uint64_t unit_start = piece.range.offset;
  for (size_t i = 0; i < held.size(); i++) {
    const bool is_new = held[i] == piece.updated[i], is_base = held[i] == piece.base[i];
    if (!is_new && !is_base) return {PieceState::Foreign, unit_start};
    all_new = all_new && is_new;
    all_base = all_base && is_base;
    unit_start = (unit_start / kFingerprintUnit + 1) * kFingerprintUnit;
  }
  if (all_new) return {PieceState::New};
  return {all_base ? PieceState::Base : PieceState::Torn};
}

Result<Fingerprint> make_fingerprint(const Chain& chain) {
  if (chain.layers().size() < 2)
    return Error{fmt::format("{}: not a differencing image; a fingerprint describes the base a delta needs",
                             chain.top().path())};
  const Chain base = chain_from_level(chain, 1);
  TROY_ASSIGN(ranges, delta_ranges(chain, 1));
  Fingerprint fingerprint{chain.top().format_id(chain.top().link_id()), chain.virtual_size(), {}};
  std::vector<std::byte> buffer(kPieceGrid);
  for (const ByteRange& range : split_on_grid(ranges)) {
    const auto bytes = std::span(buffer).first(range.length);
    FingerprintPiece piece{range, {}, {}};
    TROY_TRY(base.read(range.offset, bytes));
    piece.base = unit_hashes(range.offset, bytes);
    TROY_TRY(chain.read(range.offset, bytes));
    piece.updated = unit_hashes(range.offset, bytes);
    fingerprint.pieces.push_back(std::move(piece));
  }
  return fingerprint;
}

std::string serialize(const Fingerprint& fingerprint) {
  const std::string body = body_of(fingerprint);
  return body + fmt::format("sha256 {}\n", to_hex(sha256(std::as_bytes(std::span(body)))));
}

Result<Fingerprint> parse_fingerprint(const std::string& text, const std::string& path) {
  const auto bad = [&](const std::string& what) {
    return Error{fmt::format("{}: not a troy fingerprint: {}", path, what)};
  };
  size_t at = 0;
  std::string_view line;
  if (!next_line(text, at, line) || line != kFingerprintMagic) {
    if (line == "troy-fingerprint 1")
      return Error{fmt::format("{}: a fingerprint of an older format (1, whole-piece hashes); make it again with "
                               "troy fingerprint",
                               path)};
    return bad(fmt::format("the first line is not '{}'", kFingerprintMagic));
  }
  Fingerprint fingerprint;
  if (!next_line(text, at, line) || line.substr(0, 9) != "image-id " || line.size() == 9) return bad("no image-id line");
  fingerprint.image_id = std::string(line.substr(9));
  uint64_t unit = 0, count = 0;
  if (!next_line(text, at, line) || !keyed_number(line, "virtual-size", fingerprint.virtual_size))
    return bad("no virtual-size line");
  if (!next_line(text, at, line) || !keyed_number(line, "unit", unit)) return bad("no unit line");
  if (unit != kFingerprintUnit) return bad(fmt::format("unit {} (this troy reads unit {})", unit, kFingerprintUnit));
  if (!next_line(text, at, line) || !keyed_number(line, "pieces", count)) return bad("no pieces line");
  if (count > fingerprint.virtual_size / kFingerprintUnit + 1) return bad(fmt::format("{} pieces is absurd", count));
  fingerprint.pieces.reserve(count);
  uint64_t previous_end = 0;
  for (uint64_t i = 0; i < count; i++) {
    FingerprintPiece piece;
    if (!next_line(text, at, line) || !parse_piece(line, piece))
      return bad(fmt::format("piece {} of {} is missing or damaged", i + 1, count));
    if (piece.range.offset < previous_end || piece.range.end() > fingerprint.virtual_size ||
        piece.range.end() < piece.range.offset)
      return bad(fmt::format("piece {} (offset {}) overlaps the one before or lies past the disk's end", i + 1,
                             piece.range.offset));
    previous_end = piece.range.end();
    fingerprint.pieces.push_back(std::move(piece));
  }
  const size_t body_end = at;
  if (!next_line(text, at, line) || line.substr(0, 7) != "sha256 ")
    return bad("the closing sha256 line is missing (truncated?)");
  const auto body = std::as_bytes(std::span(text).first(body_end));
  if (line.substr(7) != to_hex(sha256(body)) || at != text.size())
    return bad("its sha256 line does not match its content (damaged or edited)");
  return fingerprint;
}

Result<Fingerprint> read_fingerprint(const std::string& path) {
  TROY_ASSIGN(file, PosixFile::open_read_only(path));
  if (file->size() > (1ull << 32)) return Error{fmt::format("{}: {} bytes is too large for a fingerprint", path, file->size())};
  std::string text(file->size(), '\0');
  TROY_TRY(file->read_at(0, std::as_writable_bytes(std::span(text))));
  return parse_fingerprint(text, path);
}

Result<DiskCheck> check_disk(const Fingerprint& fingerprint, const std::string& disk_path, const Console& console) {
  TROY_ASSIGN(disk, PosixFile::open_read_only(disk_path));
  if (disk->size() < fingerprint.virtual_size)
    return Error{fmt::format("{}: {} bytes, smaller than the fingerprint's disk ({} bytes)", disk_path, disk->size(),
                             fingerprint.virtual_size)};
  DiskCheck check;
  const auto& pieces = fingerprint.pieces;
  size_t announced = 0;  // reader thread only
  auto fill = [&](size_t index, PieceBuffers& read) -> Result<void> {
    const ByteRange& range = pieces[index].range;
    for (; announced < pieces.size() && pieces[announced].range.offset < range.offset + kDiskReadAhead; announced++)
      ::posix_fadvise(disk->fd(), static_cast<off_t>(pieces[announced].range.offset),
                      static_cast<off_t>(pieces[announced].range.length), POSIX_FADV_WILLNEED);
    read.target = read.target.first(range.length);
    return disk->read_at(range.offset, read.target);
  };
  ReadAhead reader(pieces.size(), kPiecesAhead, kPieceGrid, fill);
  uint64_t total = 0;
  for (const FingerprintPiece& piece : pieces) total += piece.range.length;
  Progress progress("check", total, console);
  uint64_t checked = 0;  // bytes of the pieces done, not their offset on the disk
  for (const FingerprintPiece& piece : pieces) {
    TROY_ASSIGN(read, reader.next());
    const PieceVerdict verdict = classify(piece, read->target);
    if (verdict.state == PieceState::Foreign && check.count(PieceState::Foreign) == 0)
      check.first_foreign = verdict.first_foreign;
    check.pieces_by_state[static_cast<int>(verdict.state)]++;
    checked += piece.range.length;
    progress.update(checked);
  }
  progress.finish();
  if (check.count(PieceState::Foreign) > 0) check.state = DiskState::Foreign;
  else if (check.count(PieceState::New) == pieces.size()) check.state = DiskState::New;
  else if (check.count(PieceState::Base) == pieces.size()) check.state = DiskState::Base;
  else check.state = DiskState::Partial;
  return check;
}

const char* disk_state_name(DiskState state) {
  switch (state) {
    case DiskState::New: return "new";
    case DiskState::Base: return "base";
    case DiskState::Partial: return "partial";
    case DiskState::Foreign: return "foreign";
  }
  return "foreign";
}

std::string describe(const DiskCheck& check) {
  const size_t pieces = check.count(PieceState::New) + check.count(PieceState::Base) + check.count(PieceState::Torn) +
                        check.count(PieceState::Foreign);
  return fmt::format("{} ({} pieces: {} new, {} base, {} torn, {} foreign{})", disk_state_name(check.state), pieces,
                     check.count(PieceState::New), check.count(PieceState::Base), check.count(PieceState::Torn),
                     check.count(PieceState::Foreign),
                     check.count(PieceState::Foreign) > 0 ? fmt::format(", the first at offset {}", check.first_foreign)
                                                          : "");
}

}  // namespace troy::cli
