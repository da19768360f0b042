#include "apply_target.h"
#include "file_descriptor.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/loop.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>
#include <fstream>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "io.h"
#include "text.h"

namespace troy::cli {
namespace {

namespace fs = std::filesystem;

constexpr int kMaxStackDepth = 16;
constexpr int kBusyRetries = 50;
constexpr useconds_t kBusyRetryMicroseconds = 100000;  // 5 s in all  // dm on md on partitions...: far deeper than real stacks

// The first line of a sysfs attribute, trimmed; empty when absent.
std::string sysfs_text(const fs::path& file) {
  std::ifstream in(file);
  std::string line;
  std::getline(in, line);
  const auto first = line.find_first_not_of(" \t");
  const auto last = line.find_last_not_of(" \t\r\n");
  return first == std::string::npos ? "" : line.substr(first, last - first + 1);
}

fs::path sysfs_dir(dev_t device) {
  std::error_code error;
  return fs::canonical(fmt::format("/sys/dev/block/{}:{}", major(device), minor(device)), error);
}

dev_t parse_dev(const std::string& text) {
  unsigned major_number = 0, minor_number = 0;
  if (std::sscanf(text.c_str(), "%u:%u", &major_number, &minor_number) != 2) return 0;
  return makedev(major_number, minor_number);
}

// `device`, the whole disk when it is a partition, and recursively what it
// is built on (the "slaves" of dm, md, LVM).
void collect_underlying(dev_t device, int depth, std::set<dev_t>& out) {
  if (!out.insert(device).second || depth > kMaxStackDepth) return;
  const fs::path dir = sysfs_dir(device);
  if (dir.empty()) return;
  if (fs::exists(dir / "partition")) collect_underlying(parse_dev(sysfs_text(dir.parent_path() / "dev")), depth + 1, out);
  std::error_code error;
  for (const auto& slave : fs::directory_iterator(dir / "slaves", error))
    collect_underlying(parse_dev(sysfs_text(fs::path("/sys/class/block") / slave.path().filename() / "dev")), depth + 1,
                       out);
}

// Major:minor of every mounted file system, from /proc/self/mountinfo, with
// its mount point.
std::vector<std::pair<dev_t, std::string>> mounted_devices() {
  std::vector<std::pair<dev_t, std::string>> mounts;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, numbers, root, mount_point;
    if (fields >> id >> parent >> numbers >> root >> mount_point) mounts.emplace_back(parse_dev(numbers), mount_point);
  }
  return mounts;
}

Result<void> check_not_in_use(const std::string& path, dev_t device) {
  struct stat root {};
  if (::stat("/", &root) == 0 && major(root.st_dev) != 0 && lies_on(root.st_dev, device))
    return Error{fmt::format("{}: holds the running system's root file system; refusing to write to it", path)};
  for (const auto& [mounted, mount_point] : mounted_devices())
    if (major(mounted) != 0 && lies_on(mounted, device))
      return Error{fmt::format("{}: is mounted (device {}:{} at {}); unmount it first", path, major(mounted),
                               minor(mounted), mount_point)};
  return success();
}

// Model, serial and size as the kernel reports them, for the confirmation.
std::string describe_block_device(dev_t device, uint64_t size) {
  fs::path dir = sysfs_dir(device);
  std::string text;
  const auto add = [&](const std::string& label, const std::string& value) {
    if (!value.empty()) text += fmt::format("{} {}, ", label, printable(value));  // a USB stick names itself
  };
  if (!dir.empty()) {
    add("backing file", sysfs_text(dir / "loop" / "backing_file"));
    if (fs::exists(dir / "partition")) dir = dir.parent_path();
    const fs::path about = dir / "device";
    add("model", sysfs_text(about / "vendor").empty() ? sysfs_text(about / "model")
                                                       : sysfs_text(about / "vendor") + " " + sysfs_text(about / "model"));
    std::string serial = sysfs_text(about / "serial");
    if (serial.empty()) serial = sysfs_text(about / "wwid");
    if (serial.empty()) {
      // SCSI VPD page 0x80: a 4-byte header, then the serial number.
      std::ifstream in(about / "vpd_pg80", std::ios::binary);
      std::string page((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      if (page.size() > 4) serial = page.substr(4);
      while (!serial.empty() && (serial.back() == ' ' || serial.back() == '\0')) serial.pop_back();
    }
    add("serial", serial);
  }
  return text + human_bytes(size);  // GiB, as every other size troy prints
}

// True when the file system says the range holds no data (reads as zeros).
bool is_hole(int fd, uint64_t offset, uint64_t length) {
  const off_t data = ::lseek(fd, static_cast<off_t>(offset), SEEK_DATA);
  if (data < 0) return errno == ENXIO;  // no data from offset to the end
  return static_cast<uint64_t>(data) >= offset + length;
}

bool is_one_of(const struct stat& st, const std::vector<std::string>& paths) {
  for (const std::string& path : paths) {
    struct stat other {};
    if (::stat(path.c_str(), &other) == 0 && other.st_dev == st.st_dev && other.st_ino == st.st_ino) return true;
  }
  return false;
}

struct FileId {
  dev_t device;
  ino_t inode;
  bool operator==(const FileId&) const = default;
};

// The file behind loop device `device` (by device and inode, as the kernel
// holds it open: a name can be renamed or replaced), or none when `device`
// is not a bound loop device. LOOP_GET_STATUS64 on its node when /dev has
// it; otherwise the name sysfs gives, stat'ed.
std::optional<FileId> loop_backing(dev_t device, std::string& node) {
  const fs::path dir = sysfs_dir(device);
  if (dir.empty() || !fs::exists(dir / "loop" / "backing_file")) return std::nullopt;
  node = "/dev/" + dir.filename().string();
  const int fd = ::open(node.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd >= 0) {
    struct stat st {};
    loop_info64 info {};
    const bool ours = ::fstat(fd, &st) == 0 && S_ISBLK(st.st_mode) && st.st_rdev == device &&
                      ::ioctl(fd, LOOP_GET_STATUS64, &info) == 0;
    ::close(fd);
    // lo_device is the kernel's encoding of dev_t, the same as glibc's
    // for every major below 4096.
    if (ours) return FileId{static_cast<dev_t>(info.lo_device), static_cast<ino_t>(info.lo_inode)};
  }
  std::string name = sysfs_text(dir / "loop" / "backing_file");
  if (name.ends_with(" (deleted)")) return std::nullopt;  // no name reaches it any more
  struct stat st {};
  if (::stat(name.c_str(), &st) != 0) return std::nullopt;
  return FileId{st.st_dev, st.st_ino};
}

// Every bound loop device, with the file behind it.
std::vector<std::pair<std::string, FileId>> loop_devices() {
  std::vector<std::pair<std::string, FileId>> loops;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator("/sys/block", error)) {
    if (!entry.path().filename().string().starts_with("loop")) continue;
    std::string node;
    if (const auto backing = loop_backing(parse_dev(sysfs_text(entry.path() / "dev")), node))
      loops.emplace_back(node, *backing);
  }
  return loops;
}

// A file behind a loop device is written through the device: writing the
// file itself bypasses the device's cache and whatever is mounted on it
// (`apply disk.img` while disk.img is mounted through /dev/loop0 destroyed
// the file system). A virtual machine running on the file holds a lock on
// it (qemu takes byte-range locks), which a test for a write lock sees.
Result<void> check_file_not_held(const std::string& path, const struct stat& st) {
  for (const auto& [node, backing] : loop_devices())
    if (backing == FileId{st.st_dev, st.st_ino})
      return Error{fmt::format("{}: backs loop device {}; refusing to write under it (detach it first: losetup -d {})",
                               path, node, node)};
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return success();  // opening for writing says why, next
  struct flock lock {};
  lock.l_type = F_WRLCK;
  lock.l_whence = SEEK_SET;
  const bool locked = ::fcntl(fd, F_OFD_GETLK, &lock) == 0 && lock.l_type != F_UNLCK;
  ::close(fd);
  if (locked)
    return Error{fmt::format("{}: in use: another program holds a lock on it (a running virtual machine?)", path)};
  return success();
}

// A loop device (or a partition or dm device on one) reads and writes the
// file behind it: when that file is one of the image's chain, writing the
// device destroys the image being read.
Result<void> check_not_on_inputs(const std::string& path, dev_t device, const std::vector<std::string>& inputs) {
  std::set<dev_t> underlying;
  collect_underlying(device, 0, underlying);
  for (const dev_t below : underlying) {
    std::string node;
    const auto backing = loop_backing(below, node);
    if (!backing) continue;
    for (const std::string& input : inputs) {
      struct stat st {};
      if (::stat(input.c_str(), &st) == 0 && FileId{st.st_dev, st.st_ino} == *backing)
        return Error{fmt::format("{}: loop device {} reads and writes {}, a file of the image's chain; refusing "
                                 "to write to it",
                                 path, node, input)};
    }
  }
  return success();
}

// O_EXCL on a block device fails while anything holds it: a mount (of it or
// of a partition), swap, LVM, RAID, another troy apply. A file is locked.
// Both are retried for a few seconds: a killed apply's io_uring keeps the
// target open until its last writes finish, a moment after the process died.
Result<int> open_exclusively(const std::string& path, bool block) {
  for (int attempt = 0;; attempt++) {
    const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC | (block ? O_EXCL : 0));
    if (fd < 0 && errno != EBUSY) return Error{os_error(path, "cannot open for writing")};
    if (fd >= 0 && (block || ::flock(fd, LOCK_EX | LOCK_NB) == 0)) return fd;
    if (fd >= 0) ::close(fd);
    if (attempt == kBusyRetries)
      return Error{block ? fmt::format("{}: in use (mounted, swap, or held by LVM, RAID or another program)", path)
                         : fmt::format("{}: in use: another process holds a lock on it (another troy apply?)", path)};
    ::usleep(kBusyRetryMicroseconds);
  }
}

}  // namespace

bool lies_on(dev_t used, dev_t target) {
  std::set<dev_t> underlying;
  collect_underlying(used, 0, underlying);
  return underlying.count(target) != 0;
}

Result<std::unique_ptr<Target>> Target::open(const std::string& path, const std::vector<std::string>& inputs) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return Error{os_error(path, "cannot open the target")};
  const bool block = S_ISBLK(st.st_mode);
  if (!block && !S_ISREG(st.st_mode)) return Error{fmt::format("{}: not a block device or a regular file", path)};
  if (!block && is_one_of(st, inputs))
    return Error{fmt::format("{}: is a file of the image's chain; refusing to write to it", path)};
  if (!block) TROY_TRY(check_file_not_held(path, st));
  if (block) TROY_TRY(check_not_on_inputs(path, st.st_rdev, inputs));
  if (block) TROY_TRY(check_not_in_use(path, st.st_rdev));
  TROY_ASSIGN(fd, open_exclusively(path, block));
  uint64_t size = static_cast<uint64_t>(st.st_size);
  if (block && ::ioctl(fd, BLKGETSIZE64, &size) != 0) {
    const Error error{os_error(path, "cannot read the device's size")};
    ::close(fd);
    return error;
  }
  const int direct_fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC | O_DIRECT);  // -1: the file system has no O_DIRECT
  std::unique_ptr<Target> target(new Target(path, fd, direct_fd, block, size));
  target->description_ = block ? describe_block_device(st.st_rdev, size) : fmt::format("raw file, {} bytes", size);
  target->identity_ = block ? fmt::format("block device {} {}", path, target->description_)
                            : fmt::format("file {}:{} inode {}", major(st.st_dev), minor(st.st_dev), st.st_ino);
  return target;
}

Target::~Target() {
  ::close(fd_);
  if (direct_fd_ >= 0) ::close(direct_fd_);
}

int Target::fd_for(uint64_t offset, uint64_t length, const void* buffer) const {
  const bool aligned = offset % kDirectAlignment == 0 && length % kDirectAlignment == 0 &&
                       reinterpret_cast<uintptr_t>(buffer) % kDirectAlignment == 0;
  return aligned && direct_fd_ >= 0 ? direct_fd_ : fd_;
}

Result<void> Target::read(uint64_t offset, std::span<std::byte> out) const {
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = ::pread(fd_, out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error{os_error(path_, fmt::format("read error at offset {}", offset + done))};
    if (n == 0) return Error{fmt::format("{}: ends at offset {}, before the disk does", path_, offset + done)};
    done += static_cast<size_t>(n);
  }
  return success();
}

Result<void> Target::write_at(uint64_t offset, std::span<const std::byte> data) {
  return write_with(fd_, offset, data);
}

Result<void> Target::write_direct_at(uint64_t offset, std::span<const std::byte> data) {
  return write_with(fd_for(offset, data.size(), data.data()), offset, data);
}

Result<void> Target::write_with(int fd, uint64_t offset, std::span<const std::byte> data) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::pwrite(fd, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Error{os_error(path_, fmt::format("write failed at offset {}", offset + done))};
    done += static_cast<size_t>(n);
  }
  return success();
}

Result<bool> Target::zero(uint64_t offset, uint64_t length) {
  if (block_device_) {
    uint64_t range[2] = {offset, length};
    if (::ioctl(fd_, BLKZEROOUT, range) == 0) return true;
    if (errno != EINVAL && errno != EOPNOTSUPP) return Error{os_error(path_, fmt::format("zeroing at offset {} failed", offset))};
  } else {
    // A hole reads as zeros already: punching or writing it would only cost.
    if (is_hole(fd_, offset, length)) return false;
    if (::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                    static_cast<off_t>(length)) == 0)
      return true;
    if (errno != EOPNOTSUPP) return Error{os_error(path_, fmt::format("punching a hole at offset {} failed", offset))};
  }
  TROY_TRY(write_zero_bytes(*this, offset, length));
  return true;
}

Result<void> Target::flush() {
  if (::fsync(fd_) != 0) return Error{os_error(path_, "fsync failed")};
  return success();
}

void Target::will_read(uint64_t offset, uint64_t length) const {
  (void)::posix_fadvise(fd_, static_cast<off_t>(offset), static_cast<off_t>(length), POSIX_FADV_WILLNEED);  // advisory
}

void Target::drop_cache() {
  // Advisory: clean pages are dropped, so a failure only means reading the cache.
  (void)::posix_fadvise(fd_, 0, 0, POSIX_FADV_DONTNEED);
}

}  // namespace troy::cli
