#include "fingerprint.h"

#include <sstream>

#include <fmt/format.h>

#include "chain_map.h"

namespace troy::cli {
namespace {

constexpr const char* kMagic = "troy-fingerprint 1";

Result<Sha256> parse_hex(const std::string& text) {
  Sha256 digest{};
  if (text.size() != 64) return Error{"a hash is not 64 hex digits"};
  for (size_t i = 0; i < digest.size(); i++) {
    unsigned value = 0;
    for (char c : text.substr(2 * i, 2)) {
      const bool digit = c >= '0' && c <= '9', letter = c >= 'a' && c <= 'f';
      if (!digit && !letter) return Error{"a hash is not 64 hex digits"};
      value = value * 16 + static_cast<unsigned>(digit ? c - '0' : c - 'a' + 10);
    }
    digest[i] = static_cast<uint8_t>(value);
  }
  return digest;
}

std::string body_of(const Fingerprint& fingerprint) {
  std::string body = fmt::format("{}\nimage-id {}\nvirtual-size {}\npieces {}\n", kMagic, fingerprint.image_id,
                                 fingerprint.virtual_size, fingerprint.pieces.size());
  for (const FingerprintPiece& piece : fingerprint.pieces)
    body += fmt::format("{} {} {} {}\n", piece.range.offset, piece.range.length, to_hex(piece.base),
                        to_hex(piece.updated));
  return body;
}

}  // namespace

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
    piece.base = sha256(bytes);
    TROY_TRY(chain.read(range.offset, bytes));
    piece.updated = sha256(bytes);
    fingerprint.pieces.push_back(piece);
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
  std::istringstream in(text);
  std::string line;
  if (!std::getline(in, line) || line != kMagic) return bad(fmt::format("the first line is not '{}'", kMagic));
  Fingerprint fingerprint;
  size_t count = 0;
  std::string word;
  if (!(in >> word >> fingerprint.image_id) || word != "image-id") return bad("no image-id line");
  if (!(in >> word >> fingerprint.virtual_size) || word != "virtual-size") return bad("no virtual-size line");
  if (!(in >> word >> count) || word != "pieces") return bad("no pieces line");
  for (size_t i = 0; i < count; i++) {
    FingerprintPiece piece;
    std::string base, updated;
    if (!(in >> piece.range.offset >> piece.range.length >> base >> updated))
      return bad(fmt::format("piece {} of {} is missing or damaged", i + 1, count));
    auto base_hash = parse_hex(base);
    auto updated_hash = parse_hex(updated);
    if (!base_hash || !updated_hash) return bad(fmt::format("piece {}: {}", i + 1, base_hash ? updated_hash.error().message : base_hash.error().message));
    piece.base = *base_hash;
    piece.updated = *updated_hash;
    fingerprint.pieces.push_back(piece);
  }
  std::string checksum;
  if (!(in >> word >> checksum) || word != "sha256") return bad("the closing sha256 line is missing (truncated?)");
  const std::string body = body_of(fingerprint);
  if (checksum != to_hex(sha256(std::as_bytes(std::span(body)))))
    return bad("its sha256 line does not match its content (damaged or edited)");
  return fingerprint;
}

}  // namespace troy::cli
