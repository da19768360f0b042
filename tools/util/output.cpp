#include "output.h"
#include "file_descriptor.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

namespace troy::cli {
namespace {

// The folder a path names a file in ("." for a bare name).
std::string folder_of(const std::string& path) {
  const std::string folder = std::filesystem::path(path).parent_path().string();
  return folder.empty() ? "." : folder;
}

}  // namespace

Result<OutputFile> OutputFile::create(const std::string& path, bool overwrite, const std::vector<std::string>& inputs) {
  if (path == "-") {
    if (::isatty(STDOUT_FILENO))
      return Error{"standard output is a terminal; redirect it to a file or a pipe (or give an output file)"};
    return OutputFile(path, "", STDOUT_FILENO, true, false, false);
  }
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    if (!S_ISREG(st.st_mode))
      return Error{fmt::format("{}: exists and is not a regular file; refusing to write to it", path)};
    if (!overwrite) return Error{fmt::format("{}: exists; use --overwrite to replace it", path)};
    for (const std::string& input : inputs) {
      struct stat in {};
      if (::stat(input.c_str(), &in) == 0 && in.st_dev == st.st_dev && in.st_ino == st.st_ino)
        return Error{fmt::format("{}: is {}, which this command reads; write the output to another file", path, input)};
    }
  }
  const std::filesystem::path target(path);
  const std::string folder = folder_of(path);
  if (::stat(folder.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return Error{fmt::format("{}: the folder {} does not exist", path, folder)};
  const std::string temp =
      (target.parent_path() / fmt::format(".{}.troy-partial-{}", target.filename().string(), ::getpid())).string();
  const int unnamed = ::open(folder.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
  if (unnamed >= 0) return OutputFile(path, temp, unnamed, false, true, overwrite);
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Error{os_error(path, "cannot create a file in its folder")};
  return OutputFile(path, temp, fd, false, false, overwrite);
}

OutputFile::OutputFile(OutputFile&& other) noexcept
    : path_(std::move(other.path_)), temp_(std::move(other.temp_)), fd_(other.fd_), stream_(other.stream_),
      unnamed_(other.unnamed_), overwrite_(other.overwrite_), committed_(other.committed_) {
  other.fd_ = -1;
}

OutputFile::~OutputFile() {
  if (fd_ < 0 || stream_) return;
  ::close(fd_);
  if (!committed_ && !unnamed_) ::unlink(temp_.c_str());
}

// Links the unnamed file to `name`. linkat never replaces an existing file:
// EEXIST then says `name` exists.
bool OutputFile::link_to(const std::string& name) {
  const std::string proc_path = fmt::format("/proc/self/fd/{}", fd_);
  return ::linkat(fd_, "", AT_FDCWD, name.c_str(), AT_EMPTY_PATH) == 0 ||
         (errno != EEXIST && ::linkat(AT_FDCWD, proc_path.c_str(), AT_FDCWD, name.c_str(), AT_SYMLINK_FOLLOW) == 0);
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

void OutputFile::start_writeback(uint64_t offset, uint64_t length) {
  if (stream_) return;
  // Advisory: on failure the final fsync still writes and reports everything.
  (void)::sync_file_range(fd_, static_cast<off_t>(offset), static_cast<off_t>(length), SYNC_FILE_RANGE_WRITE);
}

// When OUT does not exist, the finished unnamed file is linked straight to
// OUT: one step, so a kill leaves either nothing or the complete file. When
// OUT exists (--overwrite), it gets a hidden temporary name first and is
// renamed over OUT, which replaces it atomically; a kill between the two
// leaves the complete file under the hidden name.
Result<void> OutputFile::commit() {
  if (stream_) return success();
  if (::fsync(fd_) != 0) return Error{os_error(path_, "fsync of the output failed")};
  bool named = false;
  if (unnamed_) {
    named = link_to(path_);
    if (!named && errno != EEXIST) return Error{os_error(path_, "cannot give the finished file its name")};
    if (!named && !overwrite_) return Error{fmt::format("{}: appeared while writing; use --overwrite to replace it", path_)};
    if (!named && !link_to(temp_)) return Error{os_error(temp_, "cannot give the finished file a name")};
    unnamed_ = false;
  }
  if (!named && ::rename(temp_.c_str(), path_.c_str()) != 0) {
    const Error error{os_error(path_, "cannot rename the finished file into place")};
    ::unlink(temp_.c_str());
    return error;
  }
  committed_ = true;
  const int dir = ::open(folder_of(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
  return success();
}

}  // namespace troy::cli
