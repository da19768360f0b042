#include "io.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstring>

#include <fmt/format.h>

namespace troy {

Result<std::unique_ptr<PosixFile>> PosixFile::open_read_only(const std::string& path) {
  // O_NONBLOCK: opening a FIFO would otherwise wait for a writer forever
  // (a manifest named by mistake or by an attacker); it is refused below.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return Error{fmt::format("{}: cannot open: {}", path, std::strerror(errno))};
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int saved = errno;
    ::close(fd);
    return Error{fmt::format("{}: cannot stat: {}", path, std::strerror(saved))};
  }
  uint64_t size = static_cast<uint64_t>(st.st_size);
  if (S_ISBLK(st.st_mode)) {
    if (::ioctl(fd, BLKGETSIZE64, &size) != 0) size = 0;
  } else if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return Error{fmt::format("{}: not a regular file or block device", path)};
  }
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);  // reads of files and disks wait as usual
  return std::unique_ptr<PosixFile>(new PosixFile(path, fd, size, st.st_dev, st.st_ino));
}

PosixFile::~PosixFile() { ::close(fd_); }

bool PosixFile::is_hole(uint64_t offset, uint64_t length) const {
  if (offset >= size_) return false;
  const off_t data = ::lseek(fd_, static_cast<off_t>(offset), SEEK_DATA);
  if (data < 0) return errno == ENXIO;  // no data from offset to the end
  return static_cast<uint64_t>(data) >= offset + length;
}

namespace {

// Reads exactly out.size() bytes at offset of a file of `size` bytes.
Result<void> read_fully(int fd, const std::string& path, uint64_t size, uint64_t offset, std::span<std::byte> out) {
  if (offset > size || out.size() > size - offset)
    return Error{fmt::format("{}: read of {} bytes at offset {} is past the end of the file ({} bytes)", path,
                             out.size(), offset, size)};
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = ::pread(fd, out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error{fmt::format("{}: read error at offset {}: {}", path, offset + done, std::strerror(errno))};
    }
    if (n == 0) return Error{fmt::format("{}: file shrank while reading at offset {}", path, offset + done)};
    done += static_cast<size_t>(n);
  }
  return success();
}

}  // namespace

Result<void> PosixFile::read_at(uint64_t offset, std::span<std::byte> out) const {
  return read_fully(fd_, path_, size_, offset, out);
}

Result<std::unique_ptr<WritableFile>> WritableFile::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return Error{fmt::format("{}: cannot open for writing: {}", path, std::strerror(errno))};
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Error{fmt::format("{}: not a regular file; images are changed in place only as files", path)};
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int saved = errno;
    ::close(fd);
    return Error{saved == EWOULDBLOCK
                     ? fmt::format("{}: in use: another process holds a lock on it (a troy command or a VM)", path)
                     : fmt::format("{}: cannot lock: {}", path, std::strerror(saved))};
  }
  // qemu locks its images (and their backing files) with fcntl byte-range
  // locks, which flock does not see: a write lock on the whole file
  // conflicts with any of them.
  struct flock whole {};
  whole.l_type = F_WRLCK;
  whole.l_whence = SEEK_SET;
  if (::fcntl(fd, F_OFD_SETLK, &whole) != 0) {
    const int saved = errno;
    ::close(fd);
    return Error{saved == EAGAIN || saved == EACCES
                     ? fmt::format("{}: in use: another process holds a lock on part of it (a VM, e.g. qemu)", path)
                     : fmt::format("{}: cannot lock: {}", path, std::strerror(saved))};
  }
  return std::unique_ptr<WritableFile>(new WritableFile(path, fd, static_cast<uint64_t>(st.st_size)));
}

WritableFile::~WritableFile() { ::close(fd_); }

void WritableFile::start_writeback(uint64_t offset, uint64_t length) {
  (void)::sync_file_range(fd_, static_cast<off_t>(offset), static_cast<off_t>(length), SYNC_FILE_RANGE_WRITE);
}

Result<void> WritableFile::read_at(uint64_t offset, std::span<std::byte> out) const {
  return read_fully(fd_, path_, size_, offset, out);
}

Result<void> WritableFile::write_at(uint64_t offset, std::span<const std::byte> data) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::pwrite(fd_, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Error{fmt::format("{}: write failed at offset {}: {}", path_, offset + done, std::strerror(errno))};
    done += static_cast<size_t>(n);
  }
  size_ = std::max<uint64_t>(size_, offset + data.size());
  return success();
}

Result<void> WritableFile::set_size(uint64_t size) {
  if (::ftruncate(fd_, static_cast<off_t>(size)) != 0)
    return Error{fmt::format("{}: cannot set the size to {}: {}", path_, size, std::strerror(errno))};
  size_ = size;
  return success();
}

Result<void> WritableFile::flush() {
  if (::fsync(fd_) != 0) return Error{fmt::format("{}: fsync failed: {}", path_, std::strerror(errno))};
  return success();
}

Result<void> MemorySource::read_at(uint64_t offset, std::span<std::byte> out) const {
  if (out.empty()) return success();
  if (offset > bytes_.size() || out.size() > bytes_.size() - offset)
    return Error{fmt::format("{}: read of {} bytes at offset {} is past the end of the file ({} bytes)",
                             name_, out.size(), offset, bytes_.size())};
  std::memcpy(out.data(), bytes_.data() + offset, out.size());
  return success();
}

Result<void> MemorySink::write_at(uint64_t offset, std::span<const std::byte> data) {
  if (offset + data.size() > bytes_.size()) bytes_.resize(offset + data.size());
  std::memcpy(bytes_.data() + offset, data.data(), data.size());
  return success();
}

Result<void> MemorySink::set_size(uint64_t size) {
  bytes_.resize(size);
  return success();
}

}  // namespace troy
