// Which disk of a classroom machine is the lab's disk: the signed manifest's
// rules (size, model, serial) matched against what sysfs says of every disk.
// Never guessed: no match or several matches is an error that lists what is
// there. The sysfs folder and the device folder are parameters, so the tests
// give a fake /sys/block and image files in place of /dev.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "result.h"

namespace troy::cli {

struct DiskInfo {
  std::string name;    // "sda", "nvme0n1", "vda"
  uint64_t size = 0;   // bytes
  std::string model;   // trimmed; empty when sysfs has none
  std::string serial;  // trimmed; empty when sysfs has none
};

// Every whole disk under `block_dir` (/sys/block), sorted by name, without
// loop, ram, zram, optical, floppy, device-mapper, RAID and network block
// devices (never a Windows disk to write).
Result<std::vector<DiskInfo>> list_disks(const std::string& block_dir);

// What sysfs says of one disk folder (/sys/block/NAME): its size (512-byte
// sectors, whatever the disk's own sector size), model and serial (the
// device's `serial`, the disk's own `serial` as virtio has it, or the SCSI
// unit serial number page `vpd_pg80`).
Result<DiskInfo> read_disk_info(const std::string& block_dir, const std::string& name);

// True when every KEY=VALUE of `rule` (as parse_disk_rule returns it)
// matches: size exactly, model and serial as shell patterns (fnmatch).
bool rule_matches(const std::string& rule, const DiskInfo& disk);

// The one disk that matches any of `rules`, or with `by_name` the disk of
// that name (a lab admin's choice at the keyboard). Zero or several matches
// is an error naming the rules and listing the disks.
Result<DiskInfo> choose_disk(const std::vector<DiskInfo>& disks, const std::vector<std::string>& rules,
                             const std::optional<std::string>& by_name);

// "sda (500107862016 bytes, model 'Samsung SSD 860', serial 'S3Z9NB0K')".
std::string describe(const DiskInfo& disk);

}  // namespace troy::cli
