#include "files.h"

#include <sys/stat.h>

#include <fmt/format.h>

#include "io.h"

namespace troy::cli {

bool same_file(const std::string& a, const std::string& b) {
  struct stat first {}, second {};
  return ::stat(a.c_str(), &first) == 0 && ::stat(b.c_str(), &second) == 0 && first.st_dev == second.st_dev &&
         first.st_ino == second.st_ino;
}

Result<std::string> read_small_file(const std::string& path, uint64_t max_bytes, std::string_view what) {
  auto file = PosixFile::open_read_only(path);  // refuses FIFOs without blocking on them
  if (!file) return Error{fmt::format("{} ({})", file.error().message, what)};
  struct stat st {};
  if (::fstat((*file)->fd(), &st) != 0 || !S_ISREG(st.st_mode))
    return Error{fmt::format("{}: not a regular file; expected {}", path, what)};
  if ((*file)->size() > max_bytes)
    return Error{fmt::format("{}: {} bytes, too large for {} (at most {})", path, (*file)->size(), what, max_bytes)};
  std::string bytes((*file)->size(), '\0');
  TROY_TRY((*file)->read_at(0, std::as_writable_bytes(std::span(bytes))));
  return bytes;
}

ChainOptions chain_options(const ReadOptions& options, Diagnostics& diagnostics) {
  ChainOptions chain;
  chain.parents = options.parents;
  chain.force = options.force;
  chain.open.ignore_checksums = options.ignore_checksums;
  chain.open.diagnostics = &diagnostics;
  return chain;
}

std::vector<std::string> chain_paths(const Chain& chain) {
  std::vector<std::string> paths;
  for (const auto& layer : chain.layers()) paths.push_back(layer->path());
  return paths;
}

std::vector<std::string> parent_lines(const Chain& chain) {
  std::vector<std::string> lines;
  for (size_t i = 0; i < chain.links().size(); i++) {
    const Link& link = chain.links()[i];
    lines.push_back(fmt::format("parent of {}: {} ({})", chain.layers()[i]->path(), link.path, how_found(link)));
  }
  return lines;
}

}  // namespace troy::cli
