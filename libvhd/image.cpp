#include "image.h"

#include <fmt/format.h>

#include "merge_journal.h"
#include "updater.h"
#include "vhd.h"
#include "vhdx.h"

namespace troy {
namespace {

struct Driver {
  const char* name;
  bool (*probe)(const Source&);
  Result<std::unique_ptr<Layer>> (*open)(std::unique_ptr<Source>, const OpenOptions&);
  Result<std::unique_ptr<ImageUpdater>> (*open_for_update)(std::unique_ptr<RandomAccessFile>, const UpdateOptions&);
};

constexpr Driver kDrivers[] = {
    {"vhdx", vhdx::probe, vhdx::open, vhdx::open_for_update},
    {"vhd", vhd::probe, vhd::open, vhd::open_for_update},
};

}  // namespace

Result<std::unique_ptr<Layer>> open_layer(std::unique_ptr<Source> source, const OpenOptions& options) {
  for (const Driver& driver : kDrivers)
    if (driver.probe(*source)) return driver.open(std::move(source), options);
  return Error{fmt::format("{}: not a VHD or VHDX image (no known signature found)", source->name())};
}

Result<std::unique_ptr<Layer>> open_layer(const std::string& path, const OpenOptions& options) {
  TROY_ASSIGN(file, PosixFile::open_read_only(path));
  // A half-merged image is a valid file with the wrong content: say so
  // rather than show it.
  if (!options.merge_in_progress_ok) {
    TROY_ASSIGN(journal, read_merge_journal(path));
    if (journal)
      return Error{fmt::format("{}: a merge of {} into this image is unfinished ({}, stage {}): {}; run `troy merge "
                               "{}` again to finish it",
                               path, journal->child, merge_journal_path(path), stage_name(journal->stage),
                               journal->stage == MergeStage::Started ? "it is about to change"
                                                                     : "its content may be partly merged",
                               journal->child)};
  }
  return open_layer(std::unique_ptr<Source>(std::move(file)), options);
}

Result<std::unique_ptr<ImageUpdater>> open_for_update(const std::string& path, const UpdateOptions& options) {
  TROY_ASSIGN(file, WritableFile::open(path));
  for (const Driver& driver : kDrivers)
    if (driver.probe(*file)) return driver.open_for_update(std::move(file), options);
  return Error{fmt::format("{}: not a VHD or VHDX image (no known signature found)", path)};
}

}  // namespace troy
