#include "chunk_store.h"

#include <filesystem>

#include <fmt/format.h>

#include "chunk_index.h"
#include "io.h"
#include "output.h"
#include "sync.h"

namespace troy::cli {

namespace {

// True when `path` holds exactly `bytes`.
bool holds(const std::string& path, std::span<const std::byte> bytes) {
  auto file = PosixFile::open_read_only(path);
  if (!file || (*file)->size() != bytes.size()) return false;
  std::vector<std::byte> stored(bytes.size());
  if (!(*file)->read_at(0, stored)) return false;
  return std::equal(stored.begin(), stored.end(), bytes.begin());
}

Result<void> write_file(const std::string& path, std::span<const std::byte> bytes) {
  TROY_ASSIGN(out, OutputFile::create(path, /*overwrite=*/true));
  TROY_TRY(out.write_at(0, bytes));
  return out.commit();
}

}  // namespace

Result<void> store_piece(const std::string& root, const Sha256& sha, std::span<const std::byte> bytes,
                         ChunkStoreStats& stats) {
  const std::string path = root + "/" + chunk_path(sha);
  const std::string units = root + "/" + units_path(sha);
  const auto crcs = serialize_units(unit_crcs_of(bytes));
  if (holds(path, bytes) && holds(units, crcs)) {
    stats.shared++;
    return success();
  }
  std::error_code error;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), error);
  if (error) return Error{fmt::format("{}: cannot create the folder: {}", path, error.message())};
  // The units first: a chunk without its units is still complete (the
  // client fetches it whole); the chunk is what a reader looks for.
  TROY_TRY(write_file(units, crcs));
  TROY_TRY(write_file(path, bytes));
  stats.stored++;
  stats.bytes_stored += bytes.size();
  return success();
}

}  // namespace troy::cli
