// troy lab multicast --dir SERVED --interface IF: the lab server's side of
// delivery at lab scale (lab/delivery.h, docs/delivery.md). Announces a
// udpcast session of the newest version in SERVED/delivery and sends it to
// every machine that joins, one session after another, so a lab booting
// together gets the changed pieces once from the server instead of once per
// machine. pxe/serve.sh --multicast IF starts it.
#include <fmt/format.h>

#include <memory>

#include "common.h"
#include "delivery.h"

namespace troy::cli {
namespace {

struct MulticastOptions {
  std::string served;
  SenderOptions sender;
  unsigned portbase = 9000;
  unsigned ttl = 1;
  unsigned wait = 60;
  unsigned sessions = 0;  // 0: until stopped
  std::string log;
};

Result<MulticastSession> session_for(const MulticastOptions& options) {
  for (const LocalAddress& local : local_addresses()) {
    if (local.interface != options.sender.interface) continue;
    MulticastSession session;
    session.sender = local.address;
    session.prefix = local.prefix;
    session.portbase = options.portbase;
    session.ttl = options.ttl;
    session.wait = options.wait;
    return session;
  }
  return Error{fmt::format("{}: no such interface with an IPv4 address (the one the lab's machines are on)",
                           options.sender.interface)};
}

int run(const MulticastOptions& options, const Console& console) {
  const auto say = [&console](const std::string& line) { console.say("{}", line); };
  auto session = session_for(options);
  if (!session) {
    fmt::print(stderr, "troy: error: {}\n", printable(session.error().message));
    return kExitError;
  }
  for (unsigned done = 0; options.sessions == 0 || done < options.sessions; done++) {
    auto sent = send_session(options.served, *session, options.sender, options.log, say);
    if (!sent) {
      fmt::print(stderr, "troy: error: multicast: {}\n", printable(sent.error().message));
      return kExitError;
    }
    say(fmt::format("multicast session ended: {} pieces sent ({})", sent->received,
                    sent->complete ? "the whole stream" : "cut short"));
  }
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
  command->add_option("--interface", options->sender.interface, "The interface the lab's machines are on")
      ->required();
  command->add_option("--portbase", options->portbase, "udpcast's ports: this one and the next (default 9000)")
      ->check(CLI::Range(1024u, 65534u));
  command->add_option("--ttl", options->ttl,
                      "1 (default): this subnet only; more when routers forward multicast to the other subnets")
      ->check(CLI::Range(1u, 255u));
  command->add_option("--max-bitrate", options->sender.max_bitrate,
                      "Cap the send rate, e.g. 600m, below the slowest link on the way (no cap by default)");
  command->add_option("--min-receivers", options->sender.min_receivers,
                      "Start a session once this many machines joined (default 1) ...")
      ->check(CLI::Range(1u, 10000u));
  command->add_option("--min-wait", options->sender.min_wait,
                      "... and this many seconds passed since the first joined (default 10: the rest of the lab boots)");
  command->add_option("--max-wait", options->sender.max_wait,
                      "Start anyway this many seconds after the first joined (default 60)");
  command->add_option("--retries-until-drop", options->sender.retries_until_drop,
                      "Drop a machine that does not answer this many retransmissions (default 30): the slowest or a "
                      "dead machine no longer holds the others back; it completes over HTTP");
  command->add_option("--receiver-wait", options->wait,
                      "How long a machine waits for a session to start before it takes HTTP (default 60 s)")
      ->check(CLI::Range(1u, 3600u));
  command->add_option("--sessions", options->sessions, "Stop after this many sessions (default: until stopped)");
  command->add_option("--log", options->log, "udp-sender's messages (default: discarded)");
  command->callback([options, &exit_code, &console] { exit_code = run(*options, console); });
}

}  // namespace troy::cli
