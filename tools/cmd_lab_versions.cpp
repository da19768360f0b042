// troy lab versions | rollback | squash: a lab's versions as the admin
// manages them (tools/lab/versions_admin.h): the list with sizes and how many
// machines hold each, a rollback published as a new signed version, and a
// squash of old versions into a new base.
#include <cstdio>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common.h"
#include "lab_config.h"
#include "versions_admin.h"

namespace troy::cli {

void add_lab_config_option(CLI::App& command, std::string& path);  // --config FILE (cmd_lab_config.cpp)

namespace {

struct VersionsOptions {
  std::string served;  // --dir, else TROY_SERVED, else lab.conf's served
  std::string config;  // --config, else TROY_LAB_CONFIG, else /etc/troy/lab.conf
  std::string key;     // --key, else lab.conf's key
  std::string to;
  std::string name;
  std::string through;
  bool json = false;
};

std::string versions_json(const VersionsListing& listing) {
  nlohmann::ordered_json out;
  out["versions"] = nlohmann::ordered_json::array();
  for (size_t i = 0; i < listing.rows.size(); i++) {
    const VersionRow& row = listing.rows[i];
    nlohmann::ordered_json version;
    version["name"] = row.name;
    version["kind"] = listing.manifest.versions[i].is_base() ? "base" : "delta";
    version["from"] = listing.manifest.versions[i].from;
    version["delta_bytes"] = row.delta_bytes;
    version["same_content_as"] = row.same_content_as;
    version["machines"] = row.machines;
    version["newest"] = i + 1 == listing.rows.size();
    out["versions"].push_back(version);
  }
  out["machines_by_reported_version"] = listing.machines.by_version;
  out["unreadable_reports"] = listing.machines.unreadable;
  out["serial"] = listing.manifest.serial;
  return out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

int run_versions(const VersionsOptions& options) {
  auto served = served_directory(options.served, options.config);
  if (!served) return fail(served.error());
  auto listing = list_versions(*served);
  if (!listing) return fail(listing.error());
  const std::string text = options.json ? versions_json(*listing)
                                        : format_versions_table(listing->manifest, listing->rows, listing->machines);
  std::fwrite(text.data(), 1, text.size(), stdout);
  return kExitOk;
}

// The served directory and the signing key, from the flags or lab.conf.
Result<VersionAdminRequest> admin_request(const VersionsOptions& options, const Console& console) {
  TROY_ASSIGN(served, served_directory(options.served, options.config));
  std::string key = options.key;
  if (key.empty()) {
    TROY_ASSIGN(config, load_lab_config(options.config));
    key = config.value("key");
  }
  return VersionAdminRequest{served, key, console};
}

int finish(const Result<std::string>& done, const Console& console) {
  if (!done) return fail(done.error());
  console.say("{}", *done);
  return kExitOk;
}

void add_dir_option(CLI::App& command, VersionsOptions& options) {
  command.add_option("--dir,--served", options.served, "The served directory (default: $TROY_SERVED, else lab.conf's served)")
      ->envname("TROY_SERVED");
  add_lab_config_option(command, options.config);
}

}  // namespace

void register_lab_versions(CLI::App& app, int& exit_code, const Console& console) {
  const auto labs = app.get_subcommands([](CLI::App* sub) { return sub->get_name() == "lab"; });
  if (labs.empty()) return;
  CLI::App* lab = labs.front();
  auto options = std::make_shared<VersionsOptions>();

  CLI::App* versions = lab->add_subcommand(
      "versions", "The published versions: kind, delta size, how many machines last reported holding each");
  add_dir_option(*versions, *options);
  versions->add_flag("--json", options->json, "Print JSON");
  versions->callback([options, &exit_code] { exit_code = run_versions(*options); });

  CLI::App* back = lab->add_subcommand(
      "rollback", "Bring the lab back to an earlier version: publishes a new signed version (a delta on the newest) "
                  "whose content is that version's; machines already there write nothing");
  add_dir_option(*back, *options);
  back->add_option("--key", options->key, "The lab's Ed25519 private key (PEM; default: lab.conf's key)");
  back->add_option("--to", options->to, "The version whose content comes back")->required();
  back->add_option("--name", options->name, "The new version's name (default: rollback-to-VERSION)");
  back->callback([options, &exit_code, &console] {
    auto request = admin_request(*options, console);
    exit_code = request ? finish(rollback(*request, options->to, options->name), console) : fail(request.error());
  });

  CLI::App* squash_command = lab->add_subcommand(
      "squash", "Make a version the new base, dropping the versions before it and the files only they used "
                "(machines still at a dropped version sync to the newest)");
  add_dir_option(*squash_command, *options);
  squash_command->add_option("--key", options->key, "The lab's Ed25519 private key (PEM; default: lab.conf's key)");
  squash_command->add_option("--through", options->through, "The version that becomes the base")->required();
  squash_command->callback([options, &exit_code, &console] {
    auto request = admin_request(*options, console);
    exit_code = request ? finish(squash(*request, options->through), console) : fail(request.error());
  });
}

}  // namespace troy::cli
