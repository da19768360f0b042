// troy lab night | wake | night-report: the nightly rollout (tools/lab/night.h),
// run by systemd/troy-night.timer (or a cron line, see the README): wake the
// machines in waves, let them update and power off, report the night.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <cstdio>
#include <ctime>
#include <memory>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "common.h"
#include "hosts.h"
#include "lab_config.h"
#include "manifest.h"
#include "night.h"
#include "server.h"

namespace troy::cli {

void add_lab_config_option(CLI::App& command, std::string& path);  // --config FILE (cmd_lab_config.cpp)

namespace {

struct NightCommandOptions {
  std::string served;  // --served, else TROY_SERVED, else lab.conf's served
  std::string config;  // --config, else TROY_LAB_CONFIG, else /etc/troy/lab.conf
  std::string hosts = kDefaultHostsPath;
  bool hosts_given = false;
  std::vector<std::string> macs;  // --mac, and wake's MACHINE arguments
  bool all = false;
  size_t wave_size = NightSettings{}.wave_size;
  std::string wave_gap = "30s";
  std::string retry_after = "5m";
  int retries = NightSettings{}.retries;
  std::string duration = "3h";
  std::string broadcast = "255.255.255.255";
  uint16_t port = 9;
  std::string night;  // night-report's NIGHT
};

// The default path may be missing (a lab without seat names: the machines
// seen in reports are woken); a file named by --hosts or lab.conf must exist.
bool hosts_may_be_missing(const NightCommandOptions& options) {
  return !options.hosts_given || options.hosts == kDefaultHostsPath;
}

// --served and --hosts, else lab.conf's served and hosts.
Result<NightCommandOptions> with_lab_settings(NightCommandOptions options) {
  TROY_ASSIGN(served, served_directory(options.served, options.config));
  options.served = served;
  if (!options.hosts_given) {
    TROY_ASSIGN(config, load_lab_config(options.config));
    if (config.is_set("hosts")) {
      options.hosts = config.value("hosts");
      options.hosts_given = true;
    }
  }
  return options;
}

int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

Result<int64_t> duration_option(const std::string& text, const char* option) {
  const auto seconds = parse_duration(text);
  if (!seconds) return Error{fmt::format("{} {}: not a duration (90s, 15m, 3h; at most a week)", option, text)};
  return *seconds;
}

Result<NightSettings> night_settings(const NightCommandOptions& options) {
  NightSettings settings;
  if (options.wave_size == 0) return Error{"--wave-size 0: a wave wakes at least one machine"};
  settings.wave_size = options.wave_size;
  TROY_ASSIGN(gap, duration_option(options.wave_gap, "--wave-gap"));
  TROY_ASSIGN(retry_after, duration_option(options.retry_after, "--retry-after"));
  TROY_ASSIGN(duration, duration_option(options.duration, "--for"));
  if (options.retries < 0 || options.retries > 10) return Error{fmt::format("--retries {}: from 0 to 10", options.retries)};
  settings.wave_gap = gap;
  settings.retry_after = retry_after;
  settings.duration = duration;
  settings.retries = options.retries;
  settings.wake_current = options.all;
  return settings;
}

// The hosts file's machines, the machines that ever reported, and --mac.
Result<std::vector<KnownMachine>> known_machines(const NightCommandOptions& options, const Hosts& hosts) {
  std::map<std::string, KnownMachine> known;
  for (const auto& entry : hosts.entries) known[entry.machine] = KnownMachine{entry.machine, entry.seat, {}, false};
  for (const auto& [machine, version] : held_versions(options.served)) {
    known[machine].machine = machine;
    if (!version.empty()) known[machine].holds = version;
  }
  for (const auto& mac : options.macs) {
    const auto machine = normalize_mac(mac);
    if (!machine) return Error{fmt::format("--mac {}: not a MAC address", mac)};
    known[*machine].machine = *machine;
  }
  const auto flagged = reimage_flags(options.served);
  std::vector<KnownMachine> list;
  for (auto& [machine, entry] : known) {
    entry.seat = hosts.seat_of(machine);
    entry.reimage = flagged.contains(machine);
    list.push_back(std::move(entry));
  }
  return list;
}

// Sleeps `seconds`; true when SIGTERM or SIGINT came (systemctl stop, ^C):
// they are blocked and waited for here, so the night ends with its report.
bool interrupted_while_sleeping(const sigset_t& stops, int64_t seconds) {
  const timespec timeout{static_cast<time_t>(seconds), 0};
  return ::sigtimedwait(&stops, nullptr, &timeout) > 0;
}

void wake_wave(const std::vector<size_t>& wave, std::vector<NightMachine>& machines, const NightCommandOptions& options,
               int64_t now, int number, const Console& console) {
  std::vector<std::string> names;
  for (const size_t at : wave) {
    NightMachine& machine = machines[at];
    if (auto sent = send_magic_packet(machine.known.machine, options.broadcast, options.port); !sent)
      console.warn("{}", sent.error().message);
    ++machine.wakes;
    machine.last_wake = now;
    names.push_back(machine.known.seat.empty() ? machine.known.machine : machine.known.seat);
  }
  console.say("wave {}: woke {} machine(s) by {}:{}: {}", number, wave.size(), options.broadcast, options.port,
              fmt::format("{}", fmt::join(names, " ")));
}

int run_night(const NightCommandOptions& given, const Console& console) {
  auto resolved = with_lab_settings(given);
  if (!resolved) return fail(resolved.error());
  const NightCommandOptions& options = *resolved;
  auto settings = night_settings(options);
  if (!settings) return fail(settings.error());
  auto hosts = read_hosts(options.hosts, hosts_may_be_missing(options));
  if (!hosts) return fail(hosts.error());
  const auto newest = served_newest_version(options.served);
  if (!newest) return fail(Error{fmt::format("{}/manifest: no published version: nothing to roll out", options.served)});
  auto known = known_machines(options, *hosts);
  if (!known) return fail(known.error());
  WakeChoice choice = choose_machines(std::move(*known), newest, *settings);

  NightOutcome outcome;
  outcome.started = now_seconds();
  outcome.newest = *newest;
  outcome.settings = *settings;
  outcome.current = std::move(choice.current);
  NightPlan plan{outcome.started, outcome.started + settings->duration, {}};
  for (auto& machine : choice.wake) {
    plan.machines.insert(machine.machine);
    NightMachine woken;
    woken.known = std::move(machine);
    outcome.machines.push_back(std::move(woken));
  }
  if (auto locked = lock_night(options.served); !locked) return fail(locked.error());
  if (auto written = write_night_plan(options.served, plan); !written) return fail(written.error());
  console.say("night: {} machine(s) to wake, {} already at {}; until {} at the latest", outcome.machines.size(),
              outcome.current.size(), *newest, format_utc_time(plan.deadline));

  sigset_t stops;
  sigemptyset(&stops);
  sigaddset(&stops, SIGTERM);
  sigaddset(&stops, SIGINT);
  ::sigprocmask(SIG_BLOCK, &stops, nullptr);
  int64_t last_wave = 0;
  int waves = 0;
  bool stopped = false;
  while (true) {
    const int64_t now = now_seconds();
    observe_night(options.served, outcome.started, outcome.machines);
    if (now >= plan.deadline || night_settled(outcome.machines, *newest, *settings, now)) break;
    if (waves == 0 || now - last_wave >= settings->wave_gap) {
      const auto wave = next_wave(outcome.machines, *settings, now);
      if (!wave.empty()) {
        wake_wave(wave, outcome.machines, options, now, ++waves, console);
        last_wave = now;
      }
    }
    if (interrupted_while_sleeping(stops, 2)) {
      stopped = true;
      console.warn("night stopped by a signal: reporting what it saw so far");
      break;
    }
  }
  outcome.ended = now_seconds();
  // The machines' next boots go back to the usual decision (a morning's
  // power-on must not get the payload and a power-off).
  if (auto removed = remove_night_plan(options.served); !removed) console.warn("{}", removed.error().message);
  auto path = write_night_report(options.served, outcome);
  if (!path) return fail(path.error());
  const std::string text = format_night_report(outcome);
  std::fwrite(text.data(), 1, text.size(), stdout);
  console.say("night report: {}", *path);
  const bool all_updated = std::all_of(outcome.machines.begin(), outcome.machines.end(), [&](const auto& machine) {
    return night_verdict(machine, *newest, *settings, outcome.ended, true) == Verdict::updated;
  });
  return stopped || !all_updated ? kExitProblems : kExitOk;
}

int run_wake(const NightCommandOptions& given, const Console& console) {
  auto resolved = with_lab_settings(given);
  if (!resolved) return fail(resolved.error());
  const NightCommandOptions& options = *resolved;
  auto hosts = read_hosts(options.hosts, hosts_may_be_missing(options));
  if (!hosts) return fail(hosts.error());
  for (const auto& name : options.macs) {
    // A seat name from the hosts file, or a MAC address.
    std::optional<std::string> machine = normalize_mac(name);
    for (const auto& entry : hosts->entries)
      if (!machine && entry.seat == name) machine = entry.machine;
    if (!machine) return fail(Error{fmt::format("{}: neither a MAC address nor a seat of {}", name, hosts->path.empty() ? options.hosts : hosts->path)});
    if (auto sent = send_magic_packet(*machine, options.broadcast, options.port); !sent) return fail(sent.error());
    console.say("{}: magic packets sent to {}:{}", *machine, options.broadcast, options.port);
  }
  return kExitOk;
}

int run_night_report(const NightCommandOptions& options) {
  auto served = served_directory(options.served, options.config);
  if (!served) return fail(served.error());
  auto text = read_night_report(*served, options.night);
  if (!text) return fail(text.error());
  std::fwrite(text->data(), 1, text->size(), stdout);
  return kExitOk;
}

void add_night_served_option(CLI::App& command, NightCommandOptions& options) {
  command.add_option("--served", options.served, "The lab's served directory (default: $TROY_SERVED, else lab.conf's)")
      ->envname("TROY_SERVED");
  add_lab_config_option(command, options.config);
}

void add_wake_options(CLI::App& command, NightCommandOptions& options) {
  command.add_option("--hosts", options.hosts, "The hosts file: MAC SEAT [NOTE] lines (default: lab.conf's, /etc/troy/hosts)")
      ->each([&options](const std::string&) { options.hosts_given = true; });
  command.add_option("--broadcast", options.broadcast,
                     "Where magic packets go: the lab network's broadcast address, e.g. 10.0.0.255 (default 255.255.255.255)");
  command.add_option("--port", options.port, "UDP port of the magic packets (default 9)");
}

}  // namespace

void register_lab_night(CLI::App& lab, int& exit_code, const Console& console) {
  auto options = std::make_shared<NightCommandOptions>();

  CLI::App* night = lab.add_subcommand(
      "night", "Wake the lab's machines (wake-on-LAN, in waves), let them update and power off, report the night");
  add_night_served_option(*night, *options);
  add_wake_options(*night, *options);
  night->add_option("--mac", options->macs, "Also wake this machine (repeatable); the hosts file and reports give the rest");
  night->add_flag("--all", options->all, "Also wake machines whose last report says they hold the newest version");
  night->add_option("--wave-size", options->wave_size, "Machines woken together (default 20)");
  night->add_option("--wave-gap", options->wave_gap, "Time between two waves (default 30s)");
  night->add_option("--retry-after", options->retry_after, "Wake again a machine silent this long (default 5m)");
  night->add_option("--retries", options->retries, "How many times a silent machine is woken again (default 2)");
  night->add_option("--for", options->duration, "The night's deadline, from its start (default 3h)");
  night->callback([options, &exit_code, &console] { exit_code = run_night(*options, console); });

  CLI::App* wake = lab.add_subcommand("wake", "Send wake-on-LAN magic packets to machines now");
  add_lab_config_option(*wake, options->config);
  add_wake_options(*wake, *options);
  wake->add_option("MACHINE", options->macs, "MAC addresses, or seat names of the hosts file")->required();
  wake->callback([options, &exit_code, &console] { exit_code = run_wake(*options, console); });

  CLI::App* report = lab.add_subcommand("night-report", "Print a night's report (the newest by default)");
  add_night_served_option(*report, *options);
  report->add_option("NIGHT", options->night, "A night (2026-12-06T010000Z) or a report file");
  report->callback([options, &exit_code] { exit_code = run_night_report(*options); });
}

}  // namespace troy::cli
