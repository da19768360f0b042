// troy lab report | boot | status: the lab server's side of the boot payload
// (tools/lab/server.h). lighttpd runs the first two as CGI programs for
// /cgi-bin/report and /cgi-bin/boot (pxe/cgi/), with the served directory in
// TROY_SERVED; status is the admin's table of what every machine last said.
#include <csignal>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>

#include <fmt/format.h>

#include "common.h"
#include "lab_config.h"
#include "server.h"
#include "status_page.h"
#include "text.h"

namespace troy::cli {
namespace {

struct LabCommandOptions {
  std::string served;  // --served, else TROY_SERVED (status, forget: else lab.conf's)
  std::string config;  // --config, else TROY_LAB_CONFIG (status, forget)
  bool json = false;
  std::string machine;  // forget's MAC
  std::string hosts;  // --hosts, else TROY_HOSTS, else (status) lab.conf's, else /etc/troy/hosts (hosts.h)
};

std::string cgi_variable(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}

CgiRequest cgi_request_from_environment() {
  CgiRequest request;
  request.method = cgi_variable("REQUEST_METHOD");
  request.query = cgi_variable("QUERY_STRING");
  if (const char* length = std::getenv("CONTENT_LENGTH")) request.content_length = length;
  request.remote_address = cgi_variable("REMOTE_ADDR");
  request.host = cgi_variable("HTTP_HOST");
  request.server_address = cgi_variable("SERVER_ADDR");
  request.server_port = cgi_variable("SERVER_PORT");
  return request;
}

// Up to `length` bytes of standard input; fewer when the client hung up
// (handle_report then refuses the short body).
std::string read_cgi_body(uint64_t length) {
  std::string body(length, '\0');
  size_t done = 0;
  while (done < body.size()) {
    const size_t n = std::fread(body.data() + done, 1, body.size() - done, stdin);
    if (n == 0) break;
    done += n;
  }
  body.resize(done);
  return body;
}

// Prints the answer for the web server. A server-side failure also goes to
// standard error, which lighttpd keeps in its error log.
int answer_cgi(const CgiResponse& response) {
  const std::string output = cgi_output(response);
  std::fwrite(output.data(), 1, output.size(), stdout);
  std::fflush(stdout);
  if (response.status.starts_with("5")) return fail(Error{response.body.substr(0, response.body.find('\n'))});
  return kExitOk;
}

// The status page is rebuilt after the machine has its answer
// (status_page.h): standard output is closed, so lighttpd ends the response,
// and lighttpd's SIGTERM to a CGI still running after that is ignored, so
// the rebuild is not cut (it is replaced in one step either way).
int refresh_after_answer(const std::string& served, const std::string& hosts, int answered) {
  std::signal(SIGTERM, SIG_IGN);  // first: lighttpd sends it as soon as it sees the end of the answer
  std::fclose(stdout);
  auto refreshed = refresh_status_page(served, hosts);
  if (!refreshed) std::fprintf(stderr, "troy lab report: the status page was not updated: %s\n",
                               printable(refreshed.error().message).c_str());
  return answered;
}

CgiResponse unconfigured() {
  return CgiResponse{"500 Internal Server Error", "text/plain",
                     "the served directory is not set (--served DIR or TROY_SERVED)\n"};
}

int run_report(const LabCommandOptions& options) {
  if (options.served.empty()) return answer_cgi(unconfigured());
  CgiRequest request = cgi_request_from_environment();
  // Refused requests are answered before a byte of the body is read.
  if (auto refusal = refuse_report_early(request)) return answer_cgi(*refusal);
  request.body = read_cgi_body(*parse_content_length(*request.content_length));
  const std::string hosts = options.hosts.empty() ? kDefaultHostsPath : options.hosts;
  const int answered = answer_cgi(handle_report(options.served, request, std::chrono::system_clock::now()));
  return refresh_after_answer(options.served, hosts, answered);
}

int run_boot(const LabCommandOptions& options) {
  if (options.served.empty()) return answer_cgi(unconfigured());
  return answer_cgi(handle_boot(options.served, cgi_request_from_environment(), std::chrono::system_clock::now(),
                                options.hosts.empty() ? kDefaultHostsPath : options.hosts));
}

int run_status(const LabCommandOptions& options) {
  auto served = served_directory(options.served, options.config);
  if (!served) return fail(served.error());
  std::string hosts = options.hosts;
  if (hosts.empty()) {
    auto config = load_lab_config(options.config);
    if (!config) return fail(config.error());
    hosts = config->value("hosts");  // its default: /etc/troy/hosts
  }
  auto overview = lab_overview(*served, hosts, std::chrono::system_clock::now());
  if (!overview) return fail(overview.error());
  const std::string text = options.json ? format_overview_json(*overview) : format_overview_table(*overview);
  std::fwrite(text.data(), 1, text.size(), stdout);
  return kExitOk;
}

int run_forget(const LabCommandOptions& options, const Console& console) {
  auto served = served_directory(options.served, options.config);
  if (!served) return fail(served.error());
  auto forgotten = forget_machine(*served, options.machine);
  if (!forgotten) return fail(forgotten.error());
  console.say("{}", *forgotten);
  return kExitOk;
}

void add_served_option(CLI::App& command, LabCommandOptions& options) {
  command.add_option("--served", options.served, "The lab's served directory (default: $TROY_SERVED)")
      ->envname("TROY_SERVED");
}

void add_hosts_option(CLI::App& command, LabCommandOptions& options) {
  command
      .add_option("--hosts", options.hosts,
                  "The hosts file: 'MAC SEAT [NOTE]' lines (default: $TROY_HOSTS, else /etc/troy/hosts when it exists)")
      ->envname("TROY_HOSTS");
}

}  // namespace

void register_lab_night(CLI::App& lab, int& exit_code, const Console& console);
void register_lab_config(CLI::App& lab, int& exit_code);            // cmd_lab_config.cpp
void register_lab_checkin(CLI::App& lab, int& exit_code, const Console& console);  // cmd_checkin.cpp
void add_lab_config_option(CLI::App& command, std::string& path);  // --config FILE (cmd_lab_config.cpp)

void register_lab(CLI::App& app, int& exit_code, const Console& console) {
  auto options = std::make_shared<LabCommandOptions>();
  CLI::App* lab = app.add_subcommand("lab", "The lab server's side: machines' reports, boot scripts, status");
  lab->require_subcommand(1);

  CLI::App* report = lab->add_subcommand(
      "report", "CGI program for POST /cgi-bin/report: store a machine's JSON report under SERVED/reports");
  add_served_option(*report, *options);
  add_hosts_option(*report, *options);
  report->callback([options, &exit_code] { exit_code = run_report(*options); });

  CLI::App* boot = lab->add_subcommand(
      "boot", "CGI program for GET /cgi-bin/boot?mac=..: the iPXE script (the payload, or the local disk once)");
  add_served_option(*boot, *options);
  add_hosts_option(*boot, *options);  // teacher machines (+teacher) get the check-in menu
  boot->callback([options, &exit_code] { exit_code = run_boot(*options); });

  CLI::App* status = lab->add_subcommand(
      "status", "One line per machine (hosts file first): state, version, progress, last seen, last error; a summary");
  add_served_option(*status, *options);
  add_hosts_option(*status, *options);
  add_lab_config_option(*status, options->config);
  status->add_flag("--json", options->json,
                   "Print JSON: {\"summary\",\"newest\",\"machines\":[{\"machine\",\"seat\",\"state\",...,"
                   "\"history\"}],\"skipped_lines\"}");
  status->callback([options, &exit_code] { exit_code = run_status(*options); });

  CLI::App* forget = lab->add_subcommand(
      "forget", "Forget a machine's report key (its disk was replaced: its next report enrolls the new key)");
  add_served_option(*forget, *options);
  add_lab_config_option(*forget, options->config);
  forget->add_option("MACHINE", options->machine, "The machine's MAC address")->required();
  forget->callback([options, &exit_code, &console] { exit_code = run_forget(*options, console); });

  register_lab_night(*lab, exit_code, console);  // night, wake, night-report (cmd_lab_night.cpp)
  register_lab_config(*lab, exit_code);
  register_lab_checkin(*lab, exit_code, console);  // receive (CGI), list, publish
}

}  // namespace troy::cli
