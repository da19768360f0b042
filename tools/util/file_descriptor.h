#pragma once
// A file descriptor owned by one scope, and the error line for a failed
// system call on a path: what the lab's files (reports, check-ins, the
// machine's state) and the output and apply code each had a copy of.

#include <cerrno>
#include <cstring>
#include <string>
#include <string_view>

#include <fmt/format.h>
#include <unistd.h>

namespace troy::cli {

// Owns a file descriptor; closing it also releases a flock on it.
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

// "PATH: WHAT: strerror(errno)", for the call that just failed.
inline std::string os_error(std::string_view path, std::string_view what) {
  return fmt::format("{}: {}: {}", path, what, std::strerror(errno));
}

}  // namespace troy::cli
