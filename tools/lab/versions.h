// Which published version a disk holds, from what it holds under each
// delta's fingerprint (deploy/fingerprint.h: new, base, partial, foreign),
// and so which deltas it lacks. The walk goes newest first and stops at the
// first delta whose new content the disk holds (or half holds: an apply cut
// short), so a disk already up to date costs one check.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

#include "fingerprint.h"
#include "manifest.h"
#include "result.h"

namespace troy::cli {

struct HeldVersion {
  // Index into manifest.versions of the first delta to apply;
  // versions.size() when there is nothing to do.
  size_t first_to_apply = 0;
  // The version the disk holds ("incomplete" when an apply was cut short).
  std::string held;
  // What each check said, newest first ("v3: base", "v2: new"), for the screen.
  std::vector<std::string> checks;
};

// What the disk holds under manifest.versions[index]'s delta (index >= 1).
using DeltaCheck = std::function<Result<DiskState>(size_t index)>;

// The decision. Errors: a disk that holds none of the versions (not this
// lab's disk, or changed since: nothing may be written), or a check that
// failed (it names the file).
Result<HeldVersion> find_held_version(const Manifest& manifest, const DeltaCheck& check);

}  // namespace troy::cli
