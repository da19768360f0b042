// The VHDX metadata log ([MS-VHDX] 2.3): finding the active sequence of log
// entries and replaying it. Replay is expressed as a list of writes, so a
// read-only open can overlay them in memory (ReplayedSource) while a command
// that writes the file applies them in place.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "io.h"
#include "vhdx_format.h"

namespace troy::vhdx {

// One write the replay makes to the file: `data` (4 KiB) or, when empty,
// `length` zero bytes.
struct LogWrite {
  uint64_t offset = 0;
  uint64_t length = 0;
  std::vector<std::byte> data;
};

struct LogReplay {
  bool needed = false;             // the header names a log with an active sequence
  uint64_t first_sequence = 0;     // of the entries replayed (tail to head)
  uint64_t last_sequence = 0;
  uint32_t entries = 0;
  uint32_t tail_offset = 0;        // log offsets of the tail and head entries
  uint32_t head_offset = 0;
  uint64_t flushed_file_offset = 0;
  uint64_t last_file_offset = 0;   // the file is extended to this length
  std::vector<LogWrite> writes;    // in replay order; later writes win
};

// Scans the log that `header` names and returns what replay must do.
// `file` is the image as stored. needed == false means nothing to replay: the
// LogGuid is zero, or no entry of the log is valid. The latter is what a crash
// leaves when it tore the first entry: the log is written and flushed before
// anything changes in place, so the file itself is still consistent.
// `remark` receives a sentence when the log names a LogGuid but holds no
// valid sequence (check reports it).
Result<LogReplay> find_log_replay(const Source& file, const Header& header, std::string& remark);

// The largest log Troy reads into memory. Hyper-V and qemu write 1 MiB logs.
constexpr uint64_t kMaxLogLength = 64 * MiB;

// The image as it reads after replay, without modifying the file underneath:
// the replay's writes overlaid on `base`, and the file extended to
// LastFileOffset (reading zeros there).
class ReplayedSource final : public Source {
 public:
  ReplayedSource(std::unique_ptr<Source> base, LogReplay replay);
  uint64_t size() const override { return size_; }
  Result<void> read_at(uint64_t offset, std::span<std::byte> out) const override;
  const std::string& name() const override { return base_->name(); }

 private:
  std::unique_ptr<Source> base_;
  LogReplay replay_;
  uint64_t size_;
};

}  // namespace troy::vhdx
