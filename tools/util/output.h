// Writing a new output file safely: into an unnamed file (O_TMPFILE) in the
// target's folder, given its name only when complete and flushed (in one
// linkat when the target does not exist), so a killed command leaves nothing
// behind and never a file that looks finished. Where the file system lacks
// O_TMPFILE, a hidden temporary name is used instead.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "io.h"
#include "result.h"

namespace troy::cli {

class OutputFile final : public Sink {
 public:
  // "-" means standard output (written in order, never seeked). An existing
  // `path` is replaced only with `overwrite`, and never when it is one of
  // `inputs` (the files the command reads: a source, a chain's images).
  static Result<OutputFile> create(const std::string& path, bool overwrite, const std::vector<std::string>& inputs = {});
  OutputFile(OutputFile&& other) noexcept;
  OutputFile& operator=(OutputFile&&) = delete;
  ~OutputFile() override;  // removes the temporary file unless committed

  bool is_stream() const { return stream_; }
  Result<void> set_size(uint64_t size) override;
  Result<void> write_at(uint64_t offset, std::span<const std::byte> data) override;
  const std::string& name() const override { return path_; }
  // Starts writing a finished range to disk in the background, so the final
  // flush does not have to write everything at once.
  void start_writeback(uint64_t offset, uint64_t length) override;
  // fsyncs, gives the file its name (see output.cpp), fsyncs the folder.
  Result<void> commit();

 private:
  OutputFile(std::string path, std::string temp, int fd, bool stream, bool unnamed, bool overwrite)
      : path_(std::move(path)), temp_(std::move(temp)), fd_(fd), stream_(stream), unnamed_(unnamed),
        overwrite_(overwrite) {}
  bool link_to(const std::string& name);

  std::string path_;
  std::string temp_;  // the temporary name (given at commit when unnamed_)
  int fd_ = -1;
  bool stream_ = false;
  bool unnamed_ = false;
  bool overwrite_ = false;
  bool committed_ = false;
};

}  // namespace troy::cli
