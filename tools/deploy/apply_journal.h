// The progress journal of `troy apply`: how far an interrupted run got, so
// that running the same command again skips what was done. It is written
// before the first write and at every checkpoint (after an fsync of the
// target), atomically (a new file renamed over the old one). It is only a
// hint: what it says is done is compared with the target's content before
// being skipped (see docs/apply.md).
//
// Where it lives: next to a raw-file target (DIR/.NAME.troy-apply); for a
// block device in /var/lib/troy/apply/NAME.journal; or where --journal says.
#pragma once

#include <cstdint>
#include <string>

#include "result.h"

namespace troy::cli {

struct JournalState {
  uint64_t done = 0;   // every piece below this offset holds the new content, flushed
  uint64_t limit = 0;  // nothing at or past this offset has been written
};

class Journal {
 public:
  // The journal at `path` for the plan `plan_id`. A journal of another plan,
  // or a damaged one, is ignored (and replaced at the first record()).
  static Journal open(std::string path, std::string plan_id);
  const std::string& path() const { return path_; }
  // What an interrupted run of the same plan recorded; zeros when none.
  const JournalState& resumed() const { return resumed_; }
  bool resuming() const { return resumed_.limit != 0; }
  Result<void> record(const JournalState& state);
  // After a complete run: nothing left to resume.
  void remove();

 private:
  Journal(std::string path, std::string plan_id) : path_(std::move(path)), plan_id_(std::move(plan_id)) {}
  std::string path_;
  std::string plan_id_;
  JournalState resumed_;
};

// The default place of a target's journal (see above).
std::string default_journal_path(const std::string& target, bool block_device);

}  // namespace troy::cli
