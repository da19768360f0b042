// Writing a new output file safely: into a temporary name beside the target,
// renamed over it only when complete and flushed, so a killed command never
// leaves a file that looks finished.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "result.h"

namespace troy::cli {

class OutputFile {
 public:
  // "-" means standard output (written in order, never seeked).
  static Result<OutputFile> create(const std::string& path, bool overwrite);
  OutputFile(OutputFile&& other) noexcept;
  OutputFile& operator=(OutputFile&&) = delete;
  ~OutputFile();  // removes the temporary file unless committed

  bool is_stream() const { return stream_; }
  Result<void> set_size(uint64_t size);
  Result<void> write_at(uint64_t offset, std::span<const std::byte> data);
  // fsyncs, renames the temporary file over the target, fsyncs the folder.
  Result<void> commit();

 private:
  OutputFile(std::string path, std::string temp, int fd, bool stream)
      : path_(std::move(path)), temp_(std::move(temp)), fd_(fd), stream_(stream) {}
  std::string path_;
  std::string temp_;
  int fd_ = -1;
  bool stream_ = false;
  bool committed_ = false;
};

}  // namespace troy::cli
