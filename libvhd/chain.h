// A virtual disk as a chain of layers: the top image and its parents.
// Resolution talks to layers only through the Layer interface.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "layer.h"

namespace troy {

constexpr size_t kMaxChainDepth = 64;

struct ChainOptions {
  std::vector<std::string> parents;  // --parent files: the top's parent first
  bool force = false;                // accept a parent whose id does not verify
  OpenOptions open;
  // What a refusal of an unverified parent suggests (commands without --force say otherwise).
  std::string unverified_hint = "wrong parent? --force reads it anyway";
  // Warn when a child's locators name two different files that both carry
  // its parent's id (Link::same_id_elsewhere). Reads may go on with the
  // first; merge turns it off and refuses, since a write must not guess.
  bool warn_same_id = true;
};

// How the parent of layer i (layer i + 1) was found.
struct Link {
  std::string found_by;  // "--parent", "W2ru locator", "Parent Unicode Name", ...
  std::string path;      // the parent's file, absolute, symbolic links resolved
  bool verified = false;
  std::string expected_id;
  std::string actual_id;
  // Other files, named by the child's other locators, that carry the id the
  // child records just as the parent found does (two copies of one image):
  // which one the child means cannot be told. Never set for --parent.
  std::vector<std::string> same_id_elsewhere;
};

// "found by its relative_path locator", "given by --parent": how a parent
// was found, for the lines commands print about it.
std::string how_found(const Link& link);

class Chain {
 public:
  explicit Chain(std::unique_ptr<Layer> top) { layers_.push_back(std::move(top)); }
  // A chain of layers already opened and matched, top first (tests, tools
  // that build layers in memory). No parent search or verification.
  explicit Chain(std::vector<std::unique_ptr<Layer>> layers) : layers_(std::move(layers)) {}
  Chain(Chain&&) = default;
  Chain& operator=(Chain&&) = default;

  const std::vector<std::unique_ptr<Layer>>& layers() const { return layers_; }
  const std::vector<Link>& links() const { return links_; }
  const Layer& top() const { return *layers_.front(); }
  uint64_t virtual_size() const { return top().virtual_size(); }
  uint32_t logical_sector_size() const { return top().logical_sector_size(); }

  // Finds, opens and verifies the parents of the top layer, then theirs. On
  // failure the layers opened so far stay, so callers can still show them.
  Result<void> open_parents(const ChainOptions& options);

  // Reads the resolved virtual disk: each byte from the highest layer that
  // holds it, zeros where none does.
  Result<void> read(uint64_t offset, std::span<std::byte> out) const;

  // Reads the disk as layer `level` and its parents resolve it (what that
  // layer reads as on its own): merge compares against it.
  Result<void> read_from(size_t level, uint64_t offset, std::span<std::byte> out) const;

  // True when some layer holds an extent inside the range; false means the
  // range reads as zeros without touching any data.
  Result<bool> holds_anything(uint64_t offset, uint64_t length) const;

 private:

  std::vector<std::unique_ptr<Layer>> layers_;
  std::vector<Link> links_;
};

// Opens the image at `path` and its whole chain.
Result<Chain> open_chain(const std::string& path, const ChainOptions& options);

}  // namespace troy
