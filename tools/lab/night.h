// The nightly rollout (`troy lab night`, run by systemd/troy-night.timer or
// cron): wake the lab's machines with wake-on-LAN, in waves, have them boot
// the payload and power off afterwards, wait until each has reported or the
// night's time is up, and leave a report of the night.
//
// Files, under the served directory SERVED (reports/ is not served by HTTP,
// and is owned by the web server's user, see pxe/serve.sh):
//
//   reports/night/plan.json   the night in progress, written by `troy lab night`:
//                             {"started":EPOCH,"deadline":EPOCH,"machines":[MACHINE...]}
//                             While now < deadline, /cgi-bin/boot sends a listed
//                             machine to the payload with troy.then=poweroff,
//                             even when it holds the newest version (it would
//                             otherwise boot Windows and stay on all night).
//                             Removed when the night ends; a night killed with -9
//                             stops counting at its deadline.
//   reports/night/MACHINE     EPOCH of the machine's last boot request during the
//                             night (written by /cgi-bin/boot): it woke.
//   reports/night/lock        held by the running night (one at a time)
//   reports/nights/NIGHT.txt  the report of each night (NIGHT: 2026-12-06T010000Z)
//
// MACHINE is the MAC address as server.h names machines: 52-54-00-00-00-01.
// A machine's outcome comes from the newest ACCEPTED report (reports/MACHINE.boot,
// reports/MACHINE.json, see server.h), never from a GET or a refused report.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "result.h"

namespace troy::cli {

// How a night wakes machines. A wave of machines starts at once; the gap lets
// the power supply of a room take the next one (500 PCs starting together
// trip breakers). A machine that showed no sign of life (no boot request)
// `retry_after` seconds after its wake-up is woken again, `retries` times.
struct NightSettings {
  size_t wave_size = 20;
  int64_t wave_gap = 30;      // seconds between two waves
  int64_t retry_after = 300;  // seconds, from a wake-up to the next one
  int retries = 2;
  int64_t duration = 3 * 3600;  // seconds, from the start to the deadline
  bool wake_current = false;    // also machines already at the newest version
};

// "90", "90s", "15m", "3h" -> seconds; nullopt for anything else or over a week.
std::optional<int64_t> parse_duration(std::string_view text);

// ---- whom to wake ----

// A machine the server knows: from the hosts file or from its reports.
struct KnownMachine {
  std::string machine;               // normalized MAC
  std::string seat;                  // from the hosts file, "" if not listed
  std::optional<std::string> holds;  // the version its newest accepted report says its disk holds
  bool reimage = false;              // SERVED/reimage/MACHINE is set
};

struct WakeChoice {
  std::vector<KnownMachine> wake;     // sorted by machine
  std::vector<KnownMachine> current;  // at the newest version already: not woken
};

// Every known machine is woken, except those whose disk holds `newest`
// already (unless settings.wake_current, or a reimage flag is set for it).
WakeChoice choose_machines(std::vector<KnownMachine> known, const std::optional<std::string>& newest,
                           const NightSettings& settings);

// ---- the night, as it goes ----

enum class Verdict { pending, updated, failed, no_report, did_not_wake };
std::string_view verdict_name(Verdict verdict);  // "updated", "did not wake", ...

struct NightMachine {
  KnownMachine known;
  int wakes = 0;          // how many times its magic packets were sent
  int64_t last_wake = 0;  // when, last
  std::optional<int64_t> booted;  // its boot request during the night
  // Its newest accepted report since the night started.
  std::optional<std::string> result;  // "ok" or "error"
  std::string version;
  std::string message;
};

// Indexes (into `machines`) of the next wave, at most settings.wave_size:
// machines never woken first (in order), then machines still without a sign
// of life `retry_after` seconds after their last wake-up, while they have
// retries left. Empty when nobody is due.
std::vector<size_t> next_wave(const std::vector<NightMachine>& machines, const NightSettings& settings, int64_t now);

// The machine's outcome: updated (an ok report at the newest version),
// failed (an error report, or ok at another version), no report (it booted
// but had not reported when the night ended), did not wake (no boot request
// after its last retry, or when the night ended); pending while it may still
// change. `over`: the night has ended.
Verdict night_verdict(const NightMachine& machine, const std::string& newest, const NightSettings& settings,
                      int64_t now, bool over);

// True when nothing can change any more: every machine has its verdict.
bool night_settled(const std::vector<NightMachine>& machines, const std::string& newest,
                   const NightSettings& settings, int64_t now);

// ---- the boot decision's part (server.cpp's handle_boot) ----

struct NightPlan {
  int64_t started = 0;
  int64_t deadline = 0;
  std::set<std::string> machines;
};

// Takes reports/night/lock for as long as the process lives (kill -9 included);
// an error when another night holds it.
Result<void> lock_night(const std::string& served);
Result<void> write_night_plan(const std::string& served, const NightPlan& plan);
// The plan in force; nullopt when there is none, it is damaged, or past its deadline.
std::optional<NightPlan> current_night_plan(const std::string& served, int64_t now);
Result<void> remove_night_plan(const std::string& served);

// During a night that lists `machine`: records its boot request (its sign of
// life) and returns true: /cgi-bin/boot then sends it to the payload with
// night_arguments(). False otherwise (nothing written).
bool night_boot(const std::string& served, const std::string& machine, int64_t now);
// The payload's kernel arguments with any troy.then= replaced by troy.then=poweroff.
std::string night_arguments(std::string_view arguments);

// ---- what the night saw ----

// Reads the machines' boot requests and accepted reports since `started`
// (a progress report counts as a sign of life, only ok and error as outcomes).
void observe_night(const std::string& served, int64_t started, std::vector<NightMachine>& machines);
// The version each machine's newest accepted report says its disk holds
// (reports/*.boot), by machine.
std::map<std::string, std::string> held_versions(const std::string& served);
// Machines whose reimage flag (SERVED/reimage/MACHINE) is set.
std::set<std::string> reimage_flags(const std::string& served);
// The newest version in SERVED/manifest; nullopt without one.
std::optional<std::string> served_newest_version(const std::string& served);

// ---- the magic packet ----

// 6 x 0xFF, then the MAC 16 times; nullopt when `machine` is not a MAC.
std::optional<std::array<uint8_t, 102>> magic_packet(std::string_view machine);
// Sends the machine's magic packet `copies` times (UDP can lose one) to the
// broadcast address `broadcast` (IPv4), port `port` (9, discard, by custom).
Result<void> send_magic_packet(std::string_view machine, const std::string& broadcast, uint16_t port, int copies = 3);

// ---- the report ----

struct NightOutcome {
  int64_t started = 0;
  int64_t ended = 0;
  std::string newest;
  std::vector<NightMachine> machines;  // woken
  std::vector<KnownMachine> current;   // not woken
  NightSettings settings;
};

// "Troy night 2026-12-06 01:00:00Z - 02:14:05Z, newest version v3" + a summary
// line (counts per verdict) + one line per machine: MACHINE SEAT VERDICT
// VERSION WAKES DETAIL.
std::string format_night_report(const NightOutcome& outcome);
// Writes reports/nights/NIGHT.txt; returns its path.
Result<std::string> write_night_report(const std::string& served, const NightOutcome& outcome);
// The report of a night: `night` a NIGHT name or a path, "" for the newest.
Result<std::string> read_night_report(const std::string& served, const std::string& night);

}  // namespace troy::cli
