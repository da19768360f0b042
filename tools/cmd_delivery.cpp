// troy lab multicast --dir SERVED --interface IF: the lab server's side of
// delivery at lab scale (lab/delivery.h, docs/delivery.md). Announces a
// udpcast session of the newest version in SERVED/delivery and sends it to
// every machine that joins, one session after another, so a lab booting
// together gets the changed pieces once from the server instead of once per
// machine. pxe/serve.sh --multicast IF starts it.
#include <fmt/format.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <thread>

#include "common.h"
#include "delivery.h"
#include "progress.h"

namespace troy::cli {
namespace {

struct MulticastOptions {
  std::string served;
  std::vector<std::string> interfaces;  // one sender per interface (subnet)
  SenderOptions sender;
  unsigned portbase = 9000;
  unsigned ttl = 1;
  unsigned wait = 60;
  unsigned sessions = 0;  // 0: until stopped
  std::string log;
};

// Interface k's session: its address, and ports of its own (portbase + 2k).
Result<MulticastSession> session_for(const MulticastOptions& options, size_t k) {
  const std::string& interface = options.interfaces[k];
  for (const LocalAddress& local : local_addresses()) {
    if (local.interface != interface) continue;
    MulticastSession session;
    session.sender = local.address;
    session.prefix = local.prefix;
    session.portbase = options.portbase + 2 * static_cast<unsigned>(k);
    session.ttl = options.ttl;
    session.wait = options.wait;
    return session;
  }
  return Error{fmt::format("{}: no such interface with an IPv4 address (the one the lab's machines are on)",
                           interface)};
}

// The senders of every interface share one announcement: each session
// rewrites it whole with every interface's line for the content it sends.
class Announcer {
 public:
  Announcer(std::string served, std::vector<MulticastSession> sessions)
      : served_(std::move(served)), sessions_(std::move(sessions)) {}
  Result<void> announce(const SessionContent& content) {
    std::lock_guard lock(mutex_);
    for (MulticastSession& session : sessions_) {
      session.version = content.version;
      session.base = content.base;
      session.index_sha256 = to_hex(content.index_sha);
    }
    return write_announcement(served_, sessions_);
  }

 private:
  std::string served_;
  std::vector<MulticastSession> sessions_;
  std::mutex mutex_;
};

// Sessions on interface k, one after another: udp-sender waits for the
// machines that announce themselves, sends, and the next session takes
// those that came while it ran (udpcast has no joining a running session).
int sessions_on(const MulticastOptions& options, size_t k, const MulticastSession& session, Announcer& announcer,
                const Console& console) {
  const std::string& interface = options.interfaces[k];
  const auto say = [&console, &interface](const std::string& line) { console.say("{}: {}", interface, line); };
  SenderOptions sender = options.sender;
  sender.interface = interface;
  std::string said_none;
  for (unsigned done = 0; options.sessions == 0 || done < options.sessions;) {
    std::string why_none;
    auto content = session_content(options.served, why_none);
    if (!content) {
      fmt::print(stderr, "troy: error: multicast: {}\n", printable(content.error().message));
      return kExitError;
    }
    if (!*content) {
      // Nothing to patch yet (one version): wait for troy publish.
      if (why_none != said_none) say(fmt::format("no session: {}", why_none));
      said_none = why_none;
      std::this_thread::sleep_for(std::chrono::seconds(5));
      continue;
    }
    said_none.clear();
    if (auto announced = announcer.announce(**content); !announced) {
      fmt::print(stderr, "troy: error: multicast: {}\n", printable(announced.error().message));
      return kExitError;
    }
    say(fmt::format("session of {} over {}: the changed 4 KiB units of {} pieces, port {}; waiting for machines",
                    (*content)->version, (*content)->base, (*content)->pieces.size(), session.portbase));
    auto sent = send_session(options.served, **content, session, sender, options.log);
    if (!sent) {
      fmt::print(stderr, "troy: error: multicast: {}\n", printable(sent.error().message));
      return kExitError;
    }
    say(fmt::format("session ended: {} pieces sent, {} of changed units ({})", sent->received,
                    short_bytes(static_cast<double>(sent->bytes_streamed)),
                    sent->complete ? "the whole stream" : "cut short"));
    // The lab booted together for the first session; the next ones are for
    // machines that came late: they start with whoever is there after
    // --min-wait, not after --min-receivers more.
    sender.min_receivers = 1;
    done++;
  }
  return kExitOk;
}

int run(const MulticastOptions& options, const Console& console) {
  std::vector<MulticastSession> sessions;
  for (size_t k = 0; k < options.interfaces.size(); k++) {
    auto session = session_for(options, k);
    if (!session) {
      fmt::print(stderr, "troy: error: {}\n", printable(session.error().message));
      return kExitError;
    }
    sessions.push_back(*session);
  }
  Announcer announcer(options.served, sessions);
  std::vector<int> codes(sessions.size(), kExitOk);
  std::vector<std::thread> senders;
  for (size_t k = 0; k < sessions.size(); k++)
    senders.emplace_back([&, k] { codes[k] = sessions_on(options, k, sessions[k], announcer, console); });
  for (std::thread& sender : senders) sender.join();
  for (const int code : codes)
    if (code != kExitOk) return code;
  return kExitOk;
}

}  // namespace

void register_delivery(CLI::App& app, int& exit_code, const Console& console) {
  // Under `troy lab`, registered before this (main.cpp), kept out of the shared cmd_lab.cpp.
  const auto labs = app.get_subcommands([](CLI::App* sub) { return sub->get_name() == "lab"; });
  if (labs.empty()) return;
  auto options = std::make_shared<MulticastOptions>();
  CLI::App* command = labs.front()->add_subcommand(
      "multicast", "Send the newest version's changed pieces to every machine at once by multicast (udpcast's "
                   "udp-sender), session after session, announced in SERVED/delivery; machines verify each piece "
                   "against the signed index and complete anything missed over HTTP");
  command->add_option("--dir", options->served, "The served directory (troy publish's)")->required();
  command->add_option("--interface", options->interfaces,
                      "The interface the lab's machines are on; several (IF1,IF2 or the option repeated): one sender "
                      "per interface, for machines on different subnets, each on its own ports (portbase + 2 per "
                      "interface)")
      ->required()
      ->delimiter(',');
  command->add_option("--portbase", options->portbase, "udpcast's ports: this one and the next (default 9000)")
      ->check(CLI::Range(1024u, 65534u));
  command->add_option("--ttl", options->ttl,
                      "1 (default): this subnet only; more when routers forward multicast to the other subnets")
      ->check(CLI::Range(1u, 255u));
  command->add_option("--max-bitrate", options->sender.max_bitrate,
                      "Cap the send rate, e.g. 600m, below the slowest link on the way (no cap by default)")
      ->check([](const std::string& value) {
        return parse_max_bitrate(value) ? std::string() : std::string("not ") + kBitrateForm;
      });
  command->add_option("--min-receivers", options->sender.min_receivers,
                      "Start the first session once this many machines joined (default 1; later sessions, for machines "
                      "that came late, start with 1) ...")
      ->check(CLI::Range(1u, kMaxMinReceivers));
  command->add_option("--min-wait", options->sender.min_wait,
                      "... and this many seconds passed since the first joined (default 10: the rest of the lab boots)");
  command->add_option("--max-wait", options->sender.max_wait,
                      "Start anyway this many seconds after the first joined (default 60)");
  command->add_option("--retries-until-drop", options->sender.retries_until_drop,
                      "Drop a machine that does not answer this many retransmissions (default 30): the slowest or a "
                      "dead machine no longer holds the others back; it completes over HTTP");
  command->add_option("--receiver-wait", options->wait,
                      "How long a machine waits for a session to start before it takes HTTP (default 60 s)")
      ->check(CLI::Range(1u, kMaxSessionWaitSeconds));
  command->add_option("--sessions", options->sessions, "Stop after this many sessions (default: until stopped)");
  command->add_option("--log", options->log, "udp-sender's messages (default: discarded)");
  command->callback([options, &exit_code, &console] { exit_code = run(*options, console); });
}

}  // namespace troy::cli
