// Byte sources under the format drivers. Drivers read through this interface
// only, so the same parser runs on a real file, on a memory buffer (fuzzing,
// unit tests) and later on a fault-injecting layer.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "result.h"

namespace troy {

class Source {
 public:
  virtual ~Source() = default;
  virtual uint64_t size() const = 0;
  // Reads exactly out.size() bytes at offset; a read past the end is an error.
  virtual Result<void> read_at(uint64_t offset, std::span<std::byte> out) const = 0;
  // The name used in error messages (the path for files).
  virtual const std::string& name() const = 0;
};

// A file opened read-only. Opening never modifies the file.
class PosixFile final : public Source {
 public:
  static Result<std::unique_ptr<PosixFile>> open_read_only(const std::string& path);
  ~PosixFile() override;
  PosixFile(const PosixFile&) = delete;
  PosixFile& operator=(const PosixFile&) = delete;

  uint64_t size() const override { return size_; }
  Result<void> read_at(uint64_t offset, std::span<std::byte> out) const override;
  const std::string& name() const override { return path_; }
  int fd() const { return fd_; }
  // True when the file system says [offset, offset + length) is a hole (it
  // reads as zeros without being read): sparse raw disks are captured at the
  // speed of their data. False when unsure, e.g. for block devices.
  bool is_hole(uint64_t offset, uint64_t length) const;
  uint64_t device() const { return device_; }
  uint64_t inode() const { return inode_; }

 private:
  PosixFile(std::string path, int fd, uint64_t size, uint64_t device, uint64_t inode)
      : path_(std::move(path)), fd_(fd), size_(size), device_(device), inode_(inode) {}
  std::string path_;
  int fd_;
  uint64_t size_;
  uint64_t device_;
  uint64_t inode_;
};

class MemorySource final : public Source {
 public:
  MemorySource(std::string name, std::vector<std::byte> bytes)
      : name_(std::move(name)), bytes_(std::move(bytes)) {}
  uint64_t size() const override { return bytes_.size(); }
  Result<void> read_at(uint64_t offset, std::span<std::byte> out) const override;
  const std::string& name() const override { return name_; }

 private:
  std::string name_;
  std::vector<std::byte> bytes_;
};

// A file that is changed in place: what the updaters write through. Writes
// and size changes are durable only after flush(); the tests put a
// power-loss simulator behind this interface.
class RandomAccessFile : public Source {
 public:
  virtual Result<void> write_at(uint64_t offset, std::span<const std::byte> data) = 0;
  virtual Result<void> set_size(uint64_t size) = 0;
  virtual Result<void> flush() = 0;
  // Advisory: starts writing a range to the disk now, so that the next
  // flush waits less (data is copied and written in parallel, not in turn).
  // Durability still comes only from flush().
  virtual void start_writeback(uint64_t /*offset*/, uint64_t /*length*/) {}
};

// A file opened for changing in place (log replay, merge), under an
// exclusive lock so two troy commands, or troy and a running VM using flock,
// never change the same image at once.
class WritableFile final : public RandomAccessFile {
 public:
  static Result<std::unique_ptr<WritableFile>> open(const std::string& path);
  ~WritableFile() override;
  WritableFile(const WritableFile&) = delete;
  WritableFile& operator=(const WritableFile&) = delete;

  uint64_t size() const override { return size_; }
  Result<void> read_at(uint64_t offset, std::span<std::byte> out) const override;
  const std::string& name() const override { return path_; }
  Result<void> write_at(uint64_t offset, std::span<const std::byte> data) override;
  Result<void> set_size(uint64_t size) override;
  Result<void> flush() override;  // fsync: data and size on stable storage
  void start_writeback(uint64_t offset, uint64_t length) override;

 private:
  WritableFile(std::string path, int fd, uint64_t size) : path_(std::move(path)), fd_(fd), size_(size) {}
  std::string path_;
  int fd_;
  uint64_t size_;
};

// A Source that reads through another one it does not own, so a parser can
// take a file that its caller keeps using.
class BorrowedSource final : public Source {
 public:
  explicit BorrowedSource(const Source& source) : source_(source) {}
  uint64_t size() const override { return source_.size(); }
  Result<void> read_at(uint64_t offset, std::span<std::byte> out) const override { return source_.read_at(offset, out); }
  const std::string& name() const override { return source_.name(); }

 private:
  const Source& source_;
};

// Where image writers put bytes: a new output file (tools/output.h), or
// memory in tests. Writers never read back through it.
class Sink {
 public:
  virtual ~Sink() = default;
  virtual Result<void> write_at(uint64_t offset, std::span<const std::byte> data) = 0;
  // Sets the file length; bytes never written read as zeros (holes).
  virtual Result<void> set_size(uint64_t size) = 0;
  // A hint that a range is final, so it can start going to disk.
  virtual void start_writeback(uint64_t /*offset*/, uint64_t /*length*/) {}
  virtual const std::string& name() const = 0;
};

class MemorySink final : public Sink {
 public:
  explicit MemorySink(std::string name) : name_(std::move(name)) {}
  Result<void> write_at(uint64_t offset, std::span<const std::byte> data) override;
  Result<void> set_size(uint64_t size) override;
  const std::string& name() const override { return name_; }
  std::vector<std::byte>& bytes() { return bytes_; }

 private:
  std::string name_;
  std::vector<std::byte> bytes_;
};

// Writes `length` zero bytes at `offset` of anything with write_at (a Sink, a
// RandomAccessFile), a MiB at a time.
template <typename Target>
Result<void> write_zero_bytes(Target& target, uint64_t offset, uint64_t length) {
  const std::vector<std::byte> zeros(std::min<uint64_t>(length, 1 << 20));
  for (uint64_t done = 0; done < length; done += zeros.size())
    TROY_TRY(target.write_at(offset + done, std::span(zeros).first(std::min<uint64_t>(zeros.size(), length - done))));
  return success();
}

// The bytes of an on-disk struct, to checksum or write it.
template <typename T>
std::span<const std::byte> bytes_of(const T& value) {
  return std::as_bytes(std::span(&value, 1));
}

// Reads a trivially copyable on-disk struct at offset.
template <typename T>
Result<T> read_struct(const Source& source, uint64_t offset) {
  T value;
  TROY_TRY(source.read_at(offset, std::as_writable_bytes(std::span(&value, 1))));
  return value;
}

}  // namespace troy
