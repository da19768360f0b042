#include "stored_version.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include <fmt/format.h>

#include "digest.h"
#include "sync.h"

namespace troy::cli {
namespace {

class StoredVersionLayer final : public Layer {
 public:
  StoredVersionLayer(std::string path, ChunkIndex index, std::unique_ptr<ChunkStore> store)
      : path_(std::move(path)), index_(std::move(index)), store_(std::move(store)) {}

  const std::string& path() const override { return path_; }
  uint64_t virtual_size() const override { return index_.total_size; }
  uint32_t logical_sector_size() const override { return 512; }
  const ParentLink* parent_link() const override { return nullptr; }
  Guid link_id() const override { return {}; }
  std::string format_id(const Guid&) const override { return ""; }

  // Every piece that is not zeros is held; zero pieces are not (they read
  // as zeros, being the bottom layer).
  Result<void> extents(uint64_t offset, uint64_t length, std::vector<Extent>& out) const override {
    const uint64_t end = std::min(offset + length, index_.total_size);
    for (uint64_t at = offset; at < end;) {
      const size_t piece = static_cast<size_t>(at / index_.piece_size);
      const uint64_t piece_end = std::min(index_.piece_offset(piece) + index_.piece_length(piece), end);
      if (!index_.is_zero(piece)) {
        if (!out.empty() && out.back().end() == at) out.back().length += piece_end - at;
        else out.push_back(Extent{at, piece_end - at, ExtentKind::Data});
      }
      at = piece_end;
    }
    return success();
  }

  Result<void> read(uint64_t offset, std::span<std::byte> out) const override {
    if (offset > index_.total_size || out.size() > index_.total_size - offset)
      return Error{fmt::format("{}: read past the disk's end ({} bytes at {})", path_, out.size(), offset)};
    for (uint64_t done = 0; done < out.size();) {
      const uint64_t at = offset + done;
      const size_t piece = static_cast<size_t>(at / index_.piece_size);
      const uint64_t within = at - index_.piece_offset(piece);
      const uint64_t length = std::min<uint64_t>(index_.piece_length(piece) - within, out.size() - done);
      const auto target = out.subspan(done, length);
      if (index_.is_zero(piece)) {
        std::fill(target.begin(), target.end(), std::byte{0});
      } else {
        TROY_TRY(load_piece(piece));
        std::memcpy(target.data(), cached_.data() + within, length);
      }
      done += length;
    }
    return success();
  }

  LayerInfo info() const override {
    LayerInfo info;
    info.format = "content index";
    info.type = "fixed";
    info.virtual_size = index_.total_size;
    return info;
  }

 private:
  // The whole piece, verified; the last one is kept (reads go in order).
  Result<void> load_piece(size_t piece) const {
    if (cached_piece_ == piece) return success();
    cached_piece_ = SIZE_MAX;
    const Sha256& expected = index_.pieces[piece];
    TROY_ASSIGN(bytes, store_->fetch(expected, 0, index_.piece_length(piece)));
    if (bytes.size() != index_.piece_length(piece) || sha256(bytes) != expected)
      return Error{fmt::format("{}/{}: damaged or missing: not the piece {} of {} (its SHA-256 differs)",
                               store_->location(), chunk_path(expected), piece, path_)};
    cached_ = std::move(bytes);
    cached_piece_ = piece;
    return success();
  }

  std::string path_;
  ChunkIndex index_;
  std::unique_ptr<ChunkStore> store_;
  mutable std::vector<std::byte> cached_;
  mutable size_t cached_piece_ = SIZE_MAX;
};

}  // namespace

Result<std::unique_ptr<Layer>> open_stored_version(const std::string& index_path, ChunkIndex index,
                                                   const std::string& store_root) {
  return std::unique_ptr<Layer>(
      std::make_unique<StoredVersionLayer>(index_path, std::move(index), directory_chunk_store(store_root)));
}

}  // namespace troy::cli
