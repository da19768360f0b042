#include "content.h"

#include <filesystem>

#include <fmt/format.h>

#include "chunk_index.h"
#include "held_table.h"
#include "output.h"
#include "progress.h"
#include "source.h"

namespace troy::cli {

namespace {

// An earlier version's content index, checked against the manifest.
Result<ChunkIndex> read_listed_index(const std::string& served, const ManifestVersion& version) {
  const auto& file = version.content_index;
  const std::string path = served + "/" + file.path;
  if (!file_matches(path, file.size, file.sha256))
    return Error{fmt::format("{}: not the content index the manifest lists for {} (size {}, sha256 {})", path,
                             version.name, file.size, file.sha256)};
  return read_chunk_index(path);
}

}  // namespace

Result<ManifestVersion::SignedFile> write_signed(const std::string& served, const std::string& relative,
                                                 std::span<const std::byte> bytes) {
  TROY_ASSIGN(out, OutputFile::create(served + "/" + relative, /*overwrite=*/true));
  TROY_TRY(out.write_at(0, bytes));
  TROY_TRY(out.commit());
  return ManifestVersion::SignedFile{relative, bytes.size(), to_hex(sha256(bytes))};
}

Result<void> publish_content(const std::string& served, const Chain& chain, const Manifest& manifest,
                             ManifestVersion& version, const Console& console, ChunkStoreStats& stats) {
  const std::string store = served;
  std::filesystem::create_directories(served + "/versions");
  Progress bar("indexing", chain.virtual_size(), console);
  TROY_ASSIGN(index, index_chain(
                         chain, kDefaultPieceSize,
                         [&](size_t, const Sha256& sha, std::span<const std::byte> bytes) {
                           return store_piece(store, sha, bytes, stats);
                         },
                         [&](uint64_t done) { bar.update(done); }));
  bar.finish();
  TROY_ASSIGN(index_file, write_signed(served, "versions/" + version.name + ".cidx", serialize(index)));
  version.content_index = index_file;

  std::vector<ChunkIndex> indexes;
  std::vector<std::string> names;
  for (const auto& earlier : manifest.versions) {
    if (earlier.content_index.path.empty()) {
      console.warn("{} has no content index (published by an older troy): no held table is written, and machines "
                   "decide which version they hold by the fingerprints",
                   earlier.name);
      return success();
    }
    TROY_ASSIGN(earlier_index, read_listed_index(served, earlier));
    indexes.push_back(std::move(earlier_index));
    names.push_back(earlier.name);
  }
  indexes.push_back(std::move(index));
  names.push_back(version.name);
  TROY_ASSIGN(table, make_held_table(indexes, names));
  TROY_ASSIGN(table_file, write_signed(served, "versions/" + version.name + ".held", serialize(table)));
  version.held_table = table_file;
  return success();
}

}  // namespace troy::cli
