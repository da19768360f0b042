// The merge journal: a small file beside the image a merge writes into,
// present from just before the image's first change until the merge is
// complete. It says which merge is under way, so that
//   - re-running the same merge after a crash finishes it (the journal
//     records the id the target takes when it changes, which its children
//     are then accepted against);
//   - every troy command that opens the image meanwhile refuses it, rather
//     than show a half-merged disk.
// It is replaced atomically (a new file renamed over it, both flushed), so
// it is always one complete version. See docs/merge.md.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "layer.h"
#include "result.h"

namespace troy {

enum class MergeStage {
  Started,    // the undo image is being written; the target is unchanged
  Merging,    // the undo image is complete; the target may be partly merged
  Relinking,  // the target holds the merged content; children are re-linked
};

struct MergeJournal {
  MergeStage stage = MergeStage::Started;
  std::string child;            // absolute path of the merged image (the chain's top)
  std::string target;           // absolute path of the image merged into
  Guid target_id{};             // the target's link id once changed
  std::string undo;             // absolute path of the undo image, empty without --undo
  std::vector<std::string> relink;  // absolute paths of the images re-linked to the target
  bool remove = false;          // delete the merged layers at the end
};

// ".NAME.troy-merge" in the image's folder.
std::string merge_journal_path(const std::string& image_path);

// The journal of a merge into `image_path`, or nullopt when there is none.
Result<std::optional<MergeJournal>> read_merge_journal(const std::string& image_path);

// Writes the journal for journal.target atomically and durably.
Result<void> write_merge_journal(const MergeJournal& journal);

// Removes the journal of a merge into `image_path` durably (no error when absent).
Result<void> remove_merge_journal(const std::string& image_path);

std::string stage_name(MergeStage stage);

}  // namespace troy
