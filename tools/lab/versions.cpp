#include "versions.h"

#include <fmt/format.h>

namespace troy::cli {

Result<HeldVersion> find_held_version(const Manifest& manifest, const DeltaCheck& check) {
  HeldVersion decision;
  const auto& versions = manifest.versions;
  decision.first_to_apply = versions.size();
  if (versions.size() <= 1) return decision;  // only the base: nothing can be applied, nothing checked
  DiskState oldest = DiskState::Foreign;
  for (size_t index = versions.size() - 1; index >= 1; index--) {
    TROY_ASSIGN(state, check(index));
    decision.checks.push_back(fmt::format("{}: {}", versions[index].name, disk_state_name(state)));
    if (state == DiskState::New) {
      decision.first_to_apply = index + 1;
      decision.held = versions[index].name;
      return decision;
    }
    if (state == DiskState::Partial) {
      // Each piece holds this delta's base, its new content, or a mix of the
      // two: an apply of it was cut short; applying it again completes it.
      decision.first_to_apply = index;
      decision.held = "incomplete";
      return decision;
    }
    oldest = state;
  }
  // Base under the first delta: the disk holds the lab's base version.
  if (oldest == DiskState::Base) {
    decision.first_to_apply = 1;
    decision.held = versions.front().name;
    return decision;
  }
  return Error{fmt::format("the disk holds none of the published versions (neither the base {} nor a later one: "
                           "another lab's disk, or changed since it was updated)",
                           versions.front().name)};
}

}  // namespace troy::cli
