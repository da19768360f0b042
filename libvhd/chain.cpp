#include "chain.h"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <filesystem>
#include <optional>
#include <span>
#include <string_view>

#include <fmt/format.h>

#include "image.h"
#include "merge_journal.h"

namespace troy {
namespace {

namespace fs = std::filesystem;

struct Candidate {
  std::string path;
  std::string found_by;
  std::string ignored;  // why this locator is not followed ("" when it is)
};

std::string windows_to_posix(std::string path) {
  std::replace(path.begin(), path.end(), '\\', '/');
  return path;
}

std::string file_name_of(const std::string& path) {
  const std::string posix = windows_to_posix(path);
  const size_t slash = posix.rfind('/');
  return slash == std::string::npos ? posix : posix.substr(slash + 1);
}

// "C:\x", "C:x", "\x", "\\server\share", "/x": not relative to anything.
bool is_absolute_windows_or_posix(const std::string& path) {
  const bool drive = path.size() >= 2 && path[1] == ':' && std::isalpha(static_cast<unsigned char>(path[0]));
  return drive || path.starts_with('\\') || path.starts_with('/');
}

// Where the parent may be, in the order to try: relative locators against the
// child's folder, then absolute paths mapped onto the child's folder by file
// name (images move between machines with their parents), then the name hint.
// A relative locator ([MS-VHDX] relative_path, VHD W2ru) that holds an
// absolute path is invalid and not followed: it would lead out of the
// child's folder, to wherever the image's author chose; the absolute
// locators are the place for absolute paths.
std::vector<Candidate> parent_candidates(const std::string& child_path, const ParentLink& link) {
  const fs::path folder = fs::path(child_path).parent_path();
  std::vector<Candidate> candidates;
  for (const ParentLocator& locator : link.locators) {
    const std::string label = locator.kind + " locator";
    if (locator.relative && is_absolute_windows_or_posix(locator.path)) {
      candidates.push_back({locator.path, label, "an absolute path in a relative locator, not followed"});
      continue;
    }
    if (locator.relative) {
      candidates.push_back({(folder / windows_to_posix(locator.path)).lexically_normal().string(), label, ""});
      continue;
    }
    const std::string posix = windows_to_posix(locator.path);
    if (!posix.empty() && posix.front() == '/') candidates.push_back({posix, label, ""});
    candidates.push_back({(folder / file_name_of(locator.path)).string(), label + " file name in the child's folder", ""});
  }
  if (!link.parent_name.empty())
    candidates.push_back({(folder / file_name_of(link.parent_name)).string(), "Parent Unicode Name", ""});
  return candidates;
}

std::optional<std::pair<dev_t, ino_t>> file_identity(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  return std::make_pair(st.st_dev, st.st_ino);
}

// Absolute, symbolic links resolved: the file as an admin would look for it.
std::string absolute_path(const std::string& path) {
  std::error_code error;
  const fs::path resolved = fs::weakly_canonical(fs::absolute(path), error);
  return error ? path : resolved.string();
}

// Whether the file at `path` is an image whose link id is `id`. One that
// does not open carries none (and has nothing to say: it is not the parent).
bool carries_id(const std::string& path, const Guid& id, const ChainOptions& options) {
  Diagnostics quiet;
  OpenOptions open = options.open;
  open.diagnostics = &quiet;
  auto layer = open_layer(path, open);
  return layer && (*layer)->link_id() == id;
}

// Files other than `chosen`, named by the candidates after it, that carry
// the id the child records: copies of one image in two places, where the
// first locator that resolves is only a guess at the one the child means.
std::vector<std::string> same_id_elsewhere(const Layer& child, const std::string& chosen,
                                           std::span<const Candidate> rest, const ChainOptions& options) {
  std::vector<std::pair<dev_t, ino_t>> seen;
  if (const auto identity = file_identity(chosen)) seen.push_back(*identity);
  std::vector<std::string> found;
  for (const Candidate& candidate : rest) {
    if (!candidate.ignored.empty()) continue;
    const auto identity = file_identity(candidate.path);
    if (!identity || std::find(seen.begin(), seen.end(), *identity) != seen.end()) continue;
    seen.push_back(*identity);
    if (carries_id(candidate.path, child.parent_link()->expected_id, options))
      found.push_back(absolute_path(candidate.path));
  }
  return found;
}

struct Opened {
  std::unique_ptr<Layer> layer;
  Link link;
};

Result<Opened> open_parent_at(const Layer& child, const std::string& path, const std::string& found_by,
                              const ChainOptions& options) {
  TROY_ASSIGN(layer, open_layer(path, options.open));
  Link link;
  link.found_by = found_by;
  link.path = absolute_path(path);
  link.expected_id = child.format_id(child.parent_link()->expected_id);
  link.actual_id = layer->format_id(layer->link_id());
  link.verified = layer->link_id() == child.parent_link()->expected_id;
  // A merge into this parent is unfinished: it took the id its journal
  // names, and the chain that was merged is accepted against it, so that
  // running the merge again can finish it.
  if (!link.verified && options.open.merge_in_progress_ok) {
    TROY_ASSIGN(journal, read_merge_journal(path));
    if (journal && journal->target_id == layer->link_id()) {
      link.verified = true;
      link.found_by += " (merge in progress)";
    }
  }
  return Opened{std::move(layer), std::move(link)};
}

// What the search says about a candidate it could not use: "PATH" when
// there is no such file, "PATH (why)" otherwise.
std::string tried_entry(const std::string& path, const std::string& why) {
  if (why.empty()) return path;
  // Errors from open_layer start with the path: said once is enough.
  const std::string_view reason = std::string_view(why).starts_with(path + ": ") ? std::string_view(why).substr(path.size() + 2) : why;
  return fmt::format("{} ({})", path, reason);
}

// Finds and opens the parent of `child`, preferring a candidate whose id
// verifies over one that merely exists. A candidate that is not an image
// (a directory, /etc/hostname, a damaged file) does not end the search: the
// next locator may still name the parent; the error lists what each was.
Result<Opened> find_parent(const Layer& child, const ChainOptions& options, size_t level) {
  if (level < options.parents.size())
    return open_parent_at(child, options.parents[level], "--parent", options);
  std::vector<Candidate> candidates = parent_candidates(child.path(), *child.parent_link());
  std::optional<Opened> first_unverified;
  std::vector<std::string> tried_paths;
  std::vector<std::string> tried;
  for (size_t i = 0; i < candidates.size(); i++) {
    const Candidate& candidate = candidates[i];
    if (std::find(tried_paths.begin(), tried_paths.end(), candidate.path) != tried_paths.end()) continue;
    tried_paths.push_back(candidate.path);
    if (!candidate.ignored.empty()) {
      tried.push_back(tried_entry(candidate.path, candidate.found_by + ": " + candidate.ignored));
      continue;
    }
    if (!file_identity(candidate.path)) {
      tried.push_back(candidate.path);
      continue;
    }
    auto opened = open_parent_at(child, candidate.path, candidate.found_by, options);
    if (!opened) {
      tried.push_back(tried_entry(candidate.path, opened.error().message));
      continue;
    }
    if (opened->link.verified) {
      opened->link.same_id_elsewhere =
          same_id_elsewhere(child, candidate.path, std::span(candidates).subspan(i + 1), options);
      return std::move(*opened);
    }
    if (!first_unverified) first_unverified = std::move(*opened);
  }
  if (first_unverified) return std::move(*first_unverified);
  return Error{fmt::format("{}: parent not found (tried {}); name it with --parent FILE, or, if its parent was "
                           "merged into another image and removed, re-link it: troy relink {} IMAGE",
                           child.path(), tried.empty() ? "no locator or name" : fmt::format("{}", fmt::join(tried, ", ")),
                           child.path())};
}

Result<void> verify_link(const Layer& child, const Layer& parent, const Link& link, const ChainOptions& options) {
  if (parent.logical_sector_size() != child.logical_sector_size())
    return Error{fmt::format("{}: logical sector size {} differs from its parent {} ({})", child.path(),
                             child.logical_sector_size(), parent.path(), parent.logical_sector_size())};
  // A child may be larger than its parent (Hyper-V expands differencing
  // disks; the parent then reads zeros past its end), never smaller.
  if (child.virtual_size() < parent.virtual_size()) {
    const std::string message = fmt::format("{}: virtual size {} is smaller than its parent {} ({})", child.path(),
                                            child.virtual_size(), parent.path(), parent.virtual_size());
    if (!options.force) return Error{message + "; " + options.unverified_hint};
    options.open.diagnostics->warnings.push_back(message + " (--force: reading anyway)");
  }
  if (link.verified) return success();
  const ParentLink& wanted = *child.parent_link();
  const std::string message = fmt::format("{}: parent id: {} {} does not match the {} {} of {} (found by {})",
                                          child.path(), wanted.expected_id_field, link.expected_id,
                                          wanted.parent_id_field, link.actual_id, parent.path(), link.found_by);
  if (!options.force) return Error{message + "; " + options.unverified_hint};
  options.open.diagnostics->warnings.push_back(message + " (--force: reading anyway)");
  return success();
}

std::string same_id_warning(const Layer& child, const Link& link) {
  return fmt::format("{}: its locators name different files that all carry its parent's id {}: reading {} ({}), "
                     "not {}; if that is not the one it means, re-link it: troy relink {} PARENT",
                     child.path(), link.expected_id, link.path, how_found(link),
                     fmt::join(link.same_id_elsewhere, ", "), child.path());
}

}  // namespace

std::string how_found(const Link& link) {
  if (link.found_by.starts_with("--parent")) return "given by " + link.found_by;
  return "found by its " + link.found_by;
}

Result<void> Chain::open_parents(const ChainOptions& options) {
  while (layers_.back()->parent_link() != nullptr) {
    const Layer& child = *layers_.back();
    if (layers_.size() >= kMaxChainDepth)
      return Error{fmt::format("{}: chain is deeper than {} layers; refusing", top().path(), kMaxChainDepth)};
    TROY_ASSIGN(parent, find_parent(child, options, layers_.size() - 1));
    // A file met twice has the same id twice, so comparing ids catches the
    // same file as well as a copy of a layer already in the chain.
    for (const auto& layer : layers_)
      if (layer->link_id() == parent.layer->link_id())
        return Error{fmt::format("{}: parent {} has the same id {} as {}, already in the chain: the chain loops",
                                 child.path(), parent.layer->path(), parent.link.actual_id, layer->path())};
    TROY_TRY(verify_link(child, *parent.layer, parent.link, options));
    if (!parent.link.same_id_elsewhere.empty() && options.warn_same_id)
      options.open.diagnostics->warnings.push_back(same_id_warning(child, parent.link));
    links_.push_back(std::move(parent.link));
    layers_.push_back(std::move(parent.layer));
  }
  if (options.parents.size() > layers_.size() - 1)
    return Error{fmt::format("{}: {} --parent given but the chain has only {} parent(s)", top().path(),
                             options.parents.size(), layers_.size() - 1)};
  return success();
}

Result<Chain> open_chain(const std::string& path, const ChainOptions& options) {
  TROY_ASSIGN(top, open_layer(path, options.open));
  Chain chain(std::move(top));
  TROY_TRY(chain.open_parents(options));
  return chain;
}

Result<bool> Chain::holds_anything(uint64_t offset, uint64_t length) const {
  std::vector<Extent> extents;
  for (const auto& layer : layers_) {
    TROY_TRY(layer->extents(offset, length, extents));
    if (!extents.empty()) return true;
  }
  return false;
}

Result<void> Chain::read(uint64_t offset, std::span<std::byte> out) const { return read_from(0, offset, out); }

Result<void> Chain::read_from(size_t level, uint64_t offset, std::span<std::byte> out) const {
  if (level == layers_.size()) {
    std::memset(out.data(), 0, out.size());
    return success();
  }
  const Layer& layer = *layers_[level];
  // A parent smaller than its child reads as zeros past its end.
  const uint64_t inside = offset >= layer.virtual_size() ? 0 : std::min<uint64_t>(out.size(), layer.virtual_size() - offset);
  std::memset(out.data() + inside, 0, out.size() - inside);
  std::vector<Extent> extents;
  TROY_TRY(layer.extents(offset, inside, extents));
  uint64_t cursor = offset;
  auto piece = [&](uint64_t from, uint64_t to) { return out.subspan(from - offset, to - from); };
  for (const Extent& extent : extents) {
    if (extent.offset > cursor) TROY_TRY(read_from(level + 1, cursor, piece(cursor, extent.offset)));
    if (extent.kind == ExtentKind::Data) TROY_TRY(layer.read(extent.offset, piece(extent.offset, extent.end())));
    else std::memset(piece(extent.offset, extent.end()).data(), 0, extent.length);
    cursor = extent.end();
  }
  if (offset + inside > cursor) TROY_TRY(read_from(level + 1, cursor, piece(cursor, offset + inside)));
  return success();
}

}  // namespace troy
