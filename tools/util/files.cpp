#include "files.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "io.h"

namespace troy::cli {

bool same_file(const std::string& a, const std::string& b) {
  struct stat first {}, second {};
  return ::stat(a.c_str(), &first) == 0 && ::stat(b.c_str(), &second) == 0 && first.st_dev == second.st_dev &&
         first.st_ino == second.st_ino;
}

Result<std::string> read_small_file(const std::string& path, uint64_t max_bytes, std::string_view what) {
  auto file = PosixFile::open_read_only(path);  // refuses FIFOs without blocking on them
  if (!file) return Error{fmt::format("{} ({})", file.error().message, what)};
  struct stat st {};
  if (::fstat((*file)->fd(), &st) != 0 || !S_ISREG(st.st_mode))
    return Error{fmt::format("{}: not a regular file; expected {}", path, what)};
  // Read to the end rather than trusting st_size: /proc files (the kernel
  // command line) say 0, and a file may grow while it is read.
  std::string bytes;
  char buffer[65536];
  for (;;) {
    const ssize_t got = ::read((*file)->fd(), buffer, sizeof buffer);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return Error{fmt::format("{}: cannot be read: {}", path, std::strerror(errno))};
    if (got == 0) return bytes;
    if (bytes.size() + static_cast<uint64_t>(got) > max_bytes)
      return Error{fmt::format("{}: more than {} bytes, too large for {}", path, max_bytes, what)};
    bytes.append(buffer, static_cast<size_t>(got));
  }
}

ChainOptions chain_options(const ReadOptions& options, Diagnostics& diagnostics) {
  ChainOptions chain;
  chain.parents = options.parents;
  chain.force = options.force;
  chain.open.ignore_checksums = options.ignore_checksums;
  chain.open.diagnostics = &diagnostics;
  return chain;
}

std::vector<std::string> chain_paths(const Chain& chain) {
  std::vector<std::string> paths;
  for (const auto& layer : chain.layers()) paths.push_back(layer->path());
  return paths;
}

std::vector<std::string> parent_lines(const Chain& chain) {
  std::vector<std::string> lines;
  for (size_t i = 0; i < chain.links().size(); i++) {
    const Link& link = chain.links()[i];
    lines.push_back(fmt::format("parent of {}: {} ({})", chain.layers()[i]->path(), link.path, how_found(link)));
  }
  return lines;
}

Result<ServedLock> ServedLock::take(const std::string& served) {
  const std::string path = served + "/.publish.lock";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) return Error{fmt::format("{}: cannot open the served directory's lock: {}", path, std::strerror(errno))};
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    ::close(fd);
    if (error == EWOULDBLOCK)
      return Error{fmt::format("{}: another troy publish, rollback or squash is changing this served directory; "
                               "run this again when it has finished",
                               served)};
    return Error{fmt::format("{}: cannot lock: {}", path, std::strerror(error))};
  }
  return ServedLock(fd);
}

ServedLock::~ServedLock() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace troy::cli
