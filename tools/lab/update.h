// `troy update`: the classroom machine's side of a lab, in one call. Fetch
// the signed manifest and verify it, choose the disk by the manifest's rules,
// find which version it holds, fetch the deltas it lacks (each checked
// against the manifest before anything is written), apply them with the same
// engine as `troy apply`, and report to the server. The boot payload's
// /init runs it; a lab admin can run it by hand from any Linux.
//
// Each decision is a function of its own (manifest.h, disks.h, versions.h,
// report.h); this file strings them together.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "console.h"
#include "disks.h"
#include "result.h"

namespace troy::cli {

struct UpdateOptions {
  std::string server;                   // http(s) URL or a directory
  std::string key = "/etc/troy/lab.pub";  // the lab's public key
  std::string sysfs = "/sys";           // block/ and class/net/ are read under it
  std::string dev = "/dev";             // the disk chosen as NAME is DEV/NAME
  std::optional<std::string> disk;      // by name, instead of the manifest's rules (by hand only)
  std::string work = "/var/lib/troy/update";  // fingerprints and deltas while they are needed
  std::string machine;                  // the name in reports; empty: this machine's MAC (from sysfs)
  std::string payload;                  // what runs this (the boot payload's build line), for the report
  std::string requested_after;          // "poweroff" from the kernel command line, else ""
  bool send_report = true;              // POST the report to an http server
  // Native-VHD-boot labs (the manifest's layout vhdboot, lab/vhdboot.h):
  // where the NTFS partition is mounted, and this machine's own wish to
  // keep the student's child (troy.child=keep on the kernel command line).
  std::string mount_dir = "/run/troy/ntfs";
  bool keep_child = false;
  // Called with the chosen disk and what will be written, before the first
  // write; an error stops the update with nothing written.
  std::function<Result<void>(const DiskInfo& disk, const std::string& plan)> confirm;
  Console console;  // how the progress lines are drawn (none by default)
};

struct UpdateOutcome {
  bool ok = false;
  std::string message;  // one line: what was done, or what went wrong
  std::string disk;     // the device path, empty when none was chosen
  std::string held;     // the version the disk holds now: a name, "incomplete", or "" when unknown
  bool written = false;  // anything was written to the disk
  std::string after = "reboot";  // what the payload does next: reboot or poweroff
  nlohmann::json report;  // what was sent to the server (report.h)
};

// Lines for the screen ("manifest verified: ...", "applying v2 (1 of 2)").
using Say = std::function<void(const std::string& line)>;

UpdateOutcome run_update(const UpdateOptions& options, const Say& say);

// What the payload does when done: the manifest's `after`, or a poweroff the
// kernel command line asks for (a night's rollout); reboot otherwise.
std::string decide_after(const std::string& manifest_after, const std::string& requested);

// What the kernel command line (/proc/cmdline) may say to the payload:
// troy.server=URL, troy.then=reboot|poweroff, troy.wait=SECONDS (how long an
// error stays on screen), troy.child=keep (a native-VHD-boot lab keeps the
// student's child: it only ever makes the payload write less). Nothing that
// chooses what is written: troy.disk= and troy.then=shell are refused
// (listed in `ignored`), since anyone who answers PXE on the classroom
// network can set the command line.
struct KernelSettings {
  std::string server;
  std::string then;
  std::optional<unsigned> wait;
  bool keep_child = false;
  std::vector<std::string> ignored;  // "troy.disk=sda: ..." for a warning each
};
KernelSettings kernel_settings(const std::string& cmdline);

// This machine's name in reports: the MAC of its first network interface
// (other than lo) that is up, else of the first with an address; "unknown".
std::string machine_id(const std::string& sysfs);

}  // namespace troy::cli
