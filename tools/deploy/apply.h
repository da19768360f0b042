// `troy apply`'s engine: brings a disk (a block device or a raw file) to an
// image's content, by default only what the top layer of a differencing
// image changes, after checking that the disk holds its base. Resumable
// after a kill or power loss (see docs/apply.md). The command (cmd_apply)
// and the lab's update client (lab/update) both call apply_image.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "apply_run.h"
#include "apply_target.h"
#include "chain.h"
#include "console.h"
#include "files.h"
#include "io.h"
#include "result.h"

namespace troy::cli {

struct ApplyRequest {
  std::string image;
  std::string target;
  bool full = false;        // the whole resolved disk
  std::string since;        // an ancestor: everything the layers above it change
  std::string base_hashes;  // a fingerprint: check the base when the parent is not at hand
  bool no_verify_base = false;
  bool verify = false;  // re-read what was written
  std::vector<std::string> excludes;  // OFFSET:LENGTH
  std::vector<unsigned> keep_partitions;
  std::string journal;  // empty: the default place (apply_journal.h)
  // The image's bytes when they are not the file `image` names (a delta read
  // over HTTP, piece by piece, each verified: lab/http_source.h). Only its
  // top layer is opened: the base is checked by --base-hashes.
  const troy::Source* image_source = nullptr;
  ReadOptions read;  // how the image's chain is read
  // Called once the plan is known, before anything is read or written on
  // the target; an error refuses the apply (the command's confirmation).
  std::function<Result<void>(const Target& target, uint64_t bytes)> confirm;
  Console console;  // how the progress lines are drawn (none by default)
};

// What the report and the summary tell.
struct ApplyOutcome {
  std::string mode = "-";
  std::string base_check = "-";
  uint64_t extents = 0;
  uint64_t excluded_bytes = 0;
  ApplyStats stats;
  std::string verification = "not requested";
  bool verify_failed = false;
  std::vector<std::string> parents;  // where each parent read was found (files.h parent_lines)
};

// Runs the apply; `outcome` tells how far it got even when it fails.
// Warnings (a parent not found, --no-verify-base) go to `diagnostics`.
Result<void> apply_image(const ApplyRequest& request, ApplyOutcome& outcome, Diagnostics& diagnostics);

// The JSON report of a run (troy apply --report, the lab's reports).
nlohmann::json apply_report(const ApplyRequest& request, const ApplyOutcome& outcome, double seconds,
                            const std::string& error);

}  // namespace troy::cli
