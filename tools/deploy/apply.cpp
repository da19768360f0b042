#include "apply.h"

#include <sys/stat.h>

#include <memory>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "apply_journal.h"
#include "apply_plan.h"
#include "chain_map.h"
#include "digest.h"
#include "files.h"
#include "fingerprint.h"
#include "image.h"

namespace troy::cli {
namespace {

// The image side of an apply: the chain (only its top layer when the parent
// is not at hand), how many layers are applied, and what the target must
// hold first.
struct Source {
  std::unique_ptr<Chain> chain;
  bool complete = true;      // false: only the top layer is open
  size_t applied_levels = 1;  // layers [0, applied_levels) are applied; 0 means the whole disk
  std::unique_ptr<Chain> base;
  std::optional<Fingerprint> fingerprint;
  BaseCheck check = BaseCheck::None;
  std::string mode;  // "delta", "since ANCESTOR", "full"
};


const char* check_name(BaseCheck check) {
  switch (check) {
    case BaseCheck::Parent: return "parent";
    case BaseCheck::Hashes: return "hashes";
    case BaseCheck::None: return "none";
  }
  return "none";
}

// Only the delta is at hand: its top layer alone (its own extents need no parent).
Result<std::unique_ptr<Chain>> open_top_alone(const ApplyRequest& options, Diagnostics& diagnostics) {
  OpenOptions open;
  open.ignore_checksums = options.read.ignore_checksums;
  open.diagnostics = &diagnostics;
  if (options.image_source != nullptr) {
    TROY_ASSIGN(top, open_layer(std::make_unique<BorrowedSource>(*options.image_source), open));
    return std::make_unique<Chain>(std::move(top));
  }
  TROY_ASSIGN(top, open_layer(options.image, open));
  return std::make_unique<Chain>(std::move(top));
}



Result<size_t> ancestor_level(const Chain& chain, const std::string& since) {
  std::string layers;
  for (size_t level = 0; level < chain.layers().size(); level++) {
    const std::string& path = chain.layers()[level]->path();
    if (same_file(path, since)) {
      if (level == 0) return Error{fmt::format("--since {}: is the image itself; name one of its parents", since)};
      return level;
    }
    layers += fmt::format("{}{}", layers.empty() ? "" : ", ", path);
  }
  return Error{fmt::format("--since {}: not a layer of the image's chain ({})", since, layers)};
}

Result<Fingerprint> load_fingerprint(const std::string& path, const Chain& chain) {
  TROY_ASSIGN(fingerprint, read_fingerprint(path));
  const std::string id = chain.top().format_id(chain.top().link_id());
  if (fingerprint.image_id != id || fingerprint.virtual_size != chain.virtual_size())
    return Error{fmt::format("{}: was made for the image {} of {} bytes, not {} ({}, {} bytes)", path,
                             fingerprint.image_id, fingerprint.virtual_size, chain.top().path(), id, chain.virtual_size())};
  return fingerprint;
}

// Which layers are applied, and what the target is checked against.
Result<void> choose_mode(const ApplyRequest& options, Source& source, Diagnostics& diagnostics) {
  const Chain& chain = *source.chain;
  const bool differencing = chain.top().parent_link() != nullptr;
  if (options.full || !differencing) {
    source.applied_levels = 0;
    source.mode = "full";
    return success();
  }
  source.applied_levels = 1;
  source.mode = "delta";
  if (!options.since.empty()) {
    TROY_ASSIGN(level, ancestor_level(chain, options.since));
    source.applied_levels = level;
    source.mode = fmt::format("since {}", options.since);
  }
  if (options.no_verify_base) {
    diagnostics.warnings.push_back(fmt::format("--no-verify-base: {}'s base content is not checked", options.target));
  } else if (source.complete) {
    source.check = BaseCheck::Parent;
    source.base = std::make_unique<Chain>(chain_from_level(chain, source.applied_levels));
  } else {
    TROY_ASSIGN(fingerprint, load_fingerprint(options.base_hashes, chain));
    source.fingerprint = std::move(fingerprint);
    source.check = BaseCheck::Hashes;
  }
  return success();
}

// A streamed image: its top layer alone (a remote delta's parents are
// neither searched for nor read), complete when it has no parent.
Result<std::unique_ptr<Source>> open_streamed(const ApplyRequest& options, Diagnostics& diagnostics) {
  auto source = std::make_unique<Source>();
  TROY_ASSIGN(top, open_top_alone(options, diagnostics));
  source->complete = top->top().parent_link() == nullptr;
  if (!source->complete && (options.full || !options.since.empty()))
    return Error{fmt::format("{}: --full and --since need the image's parents, which are not read over the network; "
                             "apply the delta with --base-hashes",
                             options.image)};
  if (!source->complete && options.base_hashes.empty() && !options.no_verify_base)
    return Error{fmt::format("{}: a delta read over the network is checked against --base-hashes FILE (from troy "
                             "fingerprint); its parent is not read",
                             options.image)};
  source->chain = std::move(top);
  TROY_TRY(choose_mode(options, *source, diagnostics));
  return source;
}

// A pipe is refused rather than spooled: a VHD or VHDX is not read front to
// back (VHD's footer is at the end; a VHDX's BAT and metadata may follow the
// blocks they describe; blocks are in allocation order, not disk order), so
// applying one from a pipe would mean holding it whole (docs/streaming.md).
Result<void> refuse_pipe(const std::string& image) {
  struct stat info {};
  if (::stat(image.c_str(), &info) != 0 || !(S_ISFIFO(info.st_mode) || S_ISSOCK(info.st_mode) || S_ISCHR(info.st_mode)))
    return success();
  return Error{fmt::format("{}: is a pipe: a VHD or VHDX cannot be applied as it streams by (its footer, allocation "
                           "table and blocks are read out of order); serve it over HTTP and give its URL with "
                           "--index, or save it to a file first",
                           image)};
}

Result<std::unique_ptr<Source>> open_source(const ApplyRequest& options, Diagnostics& diagnostics) {
  if (options.image_source != nullptr) return open_streamed(options, diagnostics);
  TROY_TRY(refuse_pipe(options.image));
  auto source = std::make_unique<Source>();
  auto chain = open_chain(options.image, chain_options(options.read, diagnostics));
  if (chain) {
    source->chain = std::make_unique<Chain>(std::move(*chain));
  } else {
    const bool delta_alone_will_do = options.since.empty() && !options.full &&
                                     (!options.base_hashes.empty() || options.no_verify_base);
    if (!delta_alone_will_do)
      return Error{chain.error().message + (options.full || !options.since.empty()
                                                ? ""
                                                : "; without the parent, give --base-hashes FILE (from troy fingerprint)")};
    diagnostics.warnings.push_back(fmt::format("{}; applying the delta alone{}", chain.error().message,
                                               options.no_verify_base ? "" : ", checked against " + options.base_hashes));
    TROY_ASSIGN(top, open_top_alone(options, diagnostics));
    source->chain = std::move(top);
    source->complete = false;
  }
  TROY_TRY(choose_mode(options, *source, diagnostics));
  return source;
}

// The image's content where the image is at hand, the target's elsewhere:
// what the disk will hold after the apply (for its partition table when
// only the delta is at hand).
DiskReader disk_after_apply(const Source& source, const Target& target) {
  const Chain& chain = *source.chain;
  if (source.complete) return [&chain](uint64_t offset, std::span<std::byte> out) { return chain.read(offset, out); };
  return [&chain, &target](uint64_t offset, std::span<std::byte> out) -> Result<void> {
    TROY_TRY(target.read(offset, out));
    std::vector<Extent> extents;
    TROY_TRY(chain.top().extents(offset, out.size(), extents));
    for (const Extent& extent : extents) {
      const auto piece = out.subspan(extent.offset - offset, extent.length);
      if (extent.kind == ExtentKind::Data) TROY_TRY(chain.top().read(extent.offset, piece));
      else std::fill(piece.begin(), piece.end(), std::byte{0});
    }
    return success();
  };
}

Result<std::vector<ByteRange>> excluded_ranges(const ApplyRequest& options, const Source& source, const Target& target) {
  const Chain& chain = *source.chain;
  std::vector<ByteRange> excluded;
  for (const std::string& text : options.excludes) {
    TROY_ASSIGN(range, parse_exclude(text, chain.logical_sector_size()));
    excluded.push_back(range);
  }
  if (options.keep_partitions.empty()) return excluded;
  TROY_ASSIGN(table, read_partition_table(disk_after_apply(source, target), chain.virtual_size(), chain.logical_sector_size()));
  for (unsigned number : options.keep_partitions) {
    TROY_ASSIGN(range, partition_range(table, number, options.image));
    excluded.push_back(range);
  }
  return excluded;
}

// With only hashes, each fingerprint piece is checked whole: the plan must be
// the fingerprint's, and an exclusion may drop pieces but not cut one.
Result<void> check_plan_against_fingerprint(const Fingerprint& fingerprint, const std::vector<ByteRange>& delta_pieces,
                                            const std::vector<ByteRange>& excluded, const std::string& path) {
  bool same = delta_pieces.size() == fingerprint.pieces.size();
  for (size_t i = 0; same && i < delta_pieces.size(); i++)
    same = delta_pieces[i].offset == fingerprint.pieces[i].range.offset &&
           delta_pieces[i].length == fingerprint.pieces[i].range.length;
  if (!same) return Error{fmt::format("{}: its pieces are not the image's delta (made for another image?)", path)};
  for (const ByteRange& piece : delta_pieces) {
    const auto kept = subtract({piece}, excluded);
    if (!kept.empty() && (kept.size() > 1 || kept.front().length != piece.length))
      return Error{fmt::format("an excluded range cuts the fingerprint piece at offset {} ({} bytes); with "
                               "--base-hashes exclusions must cover whole {}-byte grid cells", piece.offset,
                               piece.length, kPieceGrid)};
  }
  return success();
}

// Identifies this plan on this target in the journal: a journal of another
// image, other options or another disk is not resumed.
std::string plan_id(const Source& source, const Target& target, const std::vector<ByteRange>& kept) {
  std::string text = fmt::format("{}\n{}\n{}\n", source.mode, source.chain->virtual_size(), target.identity());
  for (const auto& layer : source.chain->layers()) text += layer->format_id(layer->link_id()) + "\n";
  for (const ByteRange& range : kept) text += fmt::format("{} {}\n", range.offset, range.length);
  return to_hex(sha256(std::as_bytes(std::span(text)))).substr(0, 32);
}

uint64_t total_length(const std::vector<ByteRange>& ranges) {
  uint64_t total = 0;
  for (const ByteRange& range : ranges) total += range.length;
  return total;
}

}  // namespace

Result<void> apply_image(const ApplyRequest& options, ApplyOutcome& outcome, Diagnostics& diagnostics) {
  auto opened = open_source(options, diagnostics);
  if (!opened) return opened.error();
  const Source& source = **opened;
  const Chain& chain = *source.chain;
  outcome.mode = source.mode;
  outcome.base_check = check_name(source.check);
  outcome.parents = parent_lines(chain);
  TROY_ASSIGN(target, Target::open(options.target, chain_paths(chain)));
  if (target->size() < chain.virtual_size())
    return Error{fmt::format("{}: {} bytes is smaller than the image's disk of {} bytes{}", options.target,
                             target->size(), chain.virtual_size(),
                             target->is_block_device() ? "" : "; enlarge the file first (truncate -s)")};
  TROY_ASSIGN(excluded, excluded_ranges(options, source, *target));
  std::vector<ByteRange> ranges{{0, chain.virtual_size()}};
  if (source.applied_levels > 0) {
    TROY_ASSIGN(delta, delta_ranges(chain, source.applied_levels));
    ranges = std::move(delta);
  }
  const std::vector<ByteRange> kept = subtract(ranges, excluded);
  if (source.fingerprint) TROY_TRY(check_plan_against_fingerprint(*source.fingerprint, split_on_grid(ranges), excluded, options.base_hashes));
  outcome.extents = kept.size();
  outcome.excluded_bytes = total_length(ranges) - total_length(kept);
  std::vector<Piece> pieces;
  for (const ByteRange& piece : split_on_grid(kept)) pieces.push_back({piece, true});
  if (options.confirm) TROY_TRY(options.confirm(*target, total_length(kept)));

  Journal journal = Journal::open(options.journal.empty() ? default_journal_path(options.target, target->is_block_device())
                                                          : options.journal,
                                  plan_id(source, *target, kept));
  const ApplyJob job{&chain, source.base.get(), source.fingerprint ? &*source.fingerprint : nullptr, source.check,
                     chain.logical_sector_size(), options.console};
  TROY_TRY(check_target(job, *target, journal.resumed(), pieces, outcome.stats));
  TROY_TRY(write_pieces(job, *target, journal, pieces, outcome.stats));
  if (!options.verify) return success();
  TROY_ASSIGN(mismatch, verify_pieces(job, *target, pieces));
  outcome.verification = mismatch ? fmt::format("failed at offset {}", *mismatch) : "passed";
  outcome.verify_failed = mismatch.has_value();
  return success();
}


nlohmann::json apply_report(const ApplyRequest& request, const ApplyOutcome& outcome, double seconds,
                            const std::string& error) {
  nlohmann::json report = {
      {"image", request.image},
      {"target", request.target},
      {"mode", outcome.mode},
      {"base_check", outcome.base_check},
      {"bytes_written", outcome.stats.bytes_written},
      {"bytes_zeroed", outcome.stats.bytes_zeroed},
      {"extents", outcome.extents},
      {"skipped", outcome.stats.bytes_skipped},
      {"excluded_bytes", outcome.excluded_bytes},
      {"duration_seconds", static_cast<double>(static_cast<int64_t>(seconds * 1000)) / 1000},
      {"verification", outcome.verification},
      {"error", nullptr},
  };
  if (!error.empty()) report["error"] = error;
  return report;
}

}  // namespace troy::cli
