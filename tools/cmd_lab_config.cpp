// troy lab config: what /etc/troy/lab.conf (tools/lab/lab_config.h) says,
// checked: the values in effect for the admin, one value for a script, or
// every value as sh or make assignments for the troy-lab service
// (systemd/troy-lab-serve) and Makefile.lab.
#include <cstdio>
#include <memory>

#include <fmt/format.h>

#include "common.h"
#include "lab_config.h"

namespace troy::cli {
namespace {

struct LabConfigOptions {
  std::string config;  // --config, else TROY_LAB_CONFIG, else /etc/troy/lab.conf
  std::string get;
  bool shell = false;
  bool make = false;
  bool keys = false;
};

std::string keys_text() {
  std::string out;
  for (const auto& key : lab_config_keys()) {
    out += fmt::format("{:<16} {}{}\n", key.name, key.meaning,
                       key.default_value.empty() ? std::string() : fmt::format(" (default: {})", key.default_value));
  }
  return out;
}

// `key = value` lines, each saying where the value comes from.
std::string effective_text(const LabConfig& config) {
  std::string out;
  for (const auto& [key, value] : config.effective()) {
    out += fmt::format("{} = {}{}\n", key, value, config.is_set(key) ? "" : "  # default");
  }
  return out;
}

int run_lab_config(const LabConfigOptions& options) {
  if (options.keys) return std::fputs(keys_text().c_str(), stdout) < 0 ? kExitError : kExitOk;
  auto config = load_lab_config(options.config);
  if (!config) return fail(config.error());
  if (auto checked = check_lab_config(*config); !checked) return fail(checked.error());
  std::string text;
  if (!options.get.empty()) {
    bool known = false;
    for (const auto& key : lab_config_keys()) known = known || key.name == options.get;
    if (!known) return fail(Error{fmt::format("--get: unknown key '{}' (troy lab config --keys lists them)", options.get)});
    text = config->value(options.get) + "\n";
  } else if (options.shell) {
    text = lab_config_shell(*config);
  } else if (options.make) {
    text = lab_config_make(*config);
  } else {
    text = effective_text(*config);
  }
  std::fwrite(text.data(), 1, text.size(), stdout);
  return kExitOk;
}

}  // namespace

void add_lab_config_option(CLI::App& command, std::string& path) {
  command.add_option("--config", path, fmt::format("The lab's settings (default: $TROY_LAB_CONFIG, else {})", kDefaultLabConfigPath))
      ->envname("TROY_LAB_CONFIG");
}

void register_lab_config(CLI::App& lab, int& exit_code) {
  auto options = std::make_shared<LabConfigOptions>();
  CLI::App* config = lab.add_subcommand(
      "config", fmt::format("Check the lab's settings ({}) and print the values in effect", kDefaultLabConfigPath));
  add_lab_config_option(*config, options->config);
  auto* get = config->add_option("--get", options->get, "Print one key's value");
  auto* shell = config->add_flag("--shell", options->shell, "Print KEY='value' lines for sh");
  auto* make = config->add_flag("--make", options->make, "Print KEY ?= value lines for make");
  auto* keys = config->add_flag("--keys", options->keys, "List the keys, what each means, and its default");
  get->excludes(shell, make, keys);
  shell->excludes(make, keys);
  make->excludes(keys);
  config->callback([options, &exit_code] { exit_code = run_lab_config(*options); });
}

}  // namespace troy::cli
