#include "output.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

namespace troy::cli {
namespace {

std::string os_error(const std::string& path, const char* what) {
  return fmt::format("{}: {}: {}", path, what, std::strerror(errno));
}

}  // namespace

Result<OutputFile> OutputFile::create(const std::string& path, bool overwrite) {
  if (path == "-") return OutputFile(path, "", STDOUT_FILENO, true);
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    if (!S_ISREG(st.st_mode))
      return Error{fmt::format("{}: exists and is not a regular file; refusing to write to it", path)};
    if (!overwrite) return Error{fmt::format("{}: exists; use --overwrite to replace it", path)};
  }
  const std::filesystem::path target(path);
  const std::string temp =
      (target.parent_path() / fmt::format(".{}.troy-partial-{}", target.filename().string(), ::getpid())).string();
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Error{os_error(temp, "cannot create")};
  return OutputFile(path, temp, fd, false);
}

OutputFile::OutputFile(OutputFile&& other) noexcept
    : path_(std::move(other.path_)), temp_(std::move(other.temp_)), fd_(other.fd_), stream_(other.stream_),
      committed_(other.committed_) {
  other.fd_ = -1;
}

OutputFile::~OutputFile() {
  if (fd_ < 0 || stream_) return;
  ::close(fd_);
  if (!committed_) ::unlink(temp_.c_str());
}

Result<void> OutputFile::set_size(uint64_t size) {
  if (stream_) return success();
  if (::ftruncate(fd_, static_cast<off_t>(size)) != 0) return Error{os_error(temp_, "cannot set size")};
  return success();
}

Result<void> OutputFile::write_at(uint64_t offset, std::span<const std::byte> data) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = stream_ ? ::write(fd_, data.data() + done, data.size() - done)
                              : ::pwrite(fd_, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error{os_error(stream_ ? std::string("standard output") : temp_, "write failed")};
    }
    done += static_cast<size_t>(n);
  }
  return success();
}

Result<void> OutputFile::commit() {
  if (stream_) return success();
  if (::fsync(fd_) != 0) return Error{os_error(temp_, "fsync failed")};
  if (::rename(temp_.c_str(), path_.c_str()) != 0) return Error{os_error(path_, "cannot rename the finished file into place")};
  committed_ = true;
  const std::string folder = std::filesystem::path(path_).parent_path().string();
  const int dir = ::open(folder.empty() ? "." : folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
  return success();
}

}  // namespace troy::cli
