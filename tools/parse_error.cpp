#include "parse_error.h"

#include <optional>

#include <fmt/format.h>

#include "suggest.h"

namespace troy::cli {
namespace {

// Every option name `command` accepts: its own and, when it passes what it
// does not know up to its parent (fallthrough: -q after a command), the
// parent's.
std::vector<std::string> option_names(const CLI::App& command) {
  std::vector<std::string> names;
  for (const CLI::App* at = &command; at != nullptr; at = at->get_fallthrough() ? at->get_parent() : nullptr) {
    for (const CLI::Option* option : at->get_options()) {
      for (const std::string& name : option->get_lnames()) names.push_back("--" + name);
      for (const std::string& name : option->get_snames()) names.push_back("-" + name);
    }
  }
  return names;
}

const CLI::Option* find_option(const CLI::App& command, const std::string& name) {
  for (const CLI::App* at = &command; at != nullptr; at = at->get_fallthrough() ? at->get_parent() : nullptr)
    if (const CLI::Option* option = at->get_option_no_throw(name)) return option;
  return nullptr;
}

std::vector<std::string> command_names(const CLI::App& app) {
  std::vector<std::string> names;
  for (const CLI::App* command : app.get_subcommands([](const CLI::App* c) { return !c->get_name().empty(); }))
    names.push_back(command->get_name());
  return names;
}

std::string prefix(const CLI::App& command) {
  const std::string path = command_path(command);
  return path.empty() ? "" : path + ": ";
}

std::string unknown_option(const CLI::App& command, const std::string& name) {
  const std::optional<std::string> near = nearest(name, option_names(command));
  const std::string help = command_path(command).empty() ? "troy --help" : "troy help " + command_path(command);
  return fmt::format("{}unknown option '{}'; {}", prefix(command), name,
                     near ? fmt::format("did you mean '{}'?", *near) : fmt::format("{} lists the options", help));
}

// What was wrong with the arguments, if a word is unknown: a mistyped
// command or option. Options' values are skipped, so `--parent x` never
// counts x as a command.
struct Scan {
  const CLI::App* command;
  std::optional<std::string> unknown;
};

// True when `word` is an option `command` knows; otherwise sets the message.
bool known_option(const CLI::App& command, const std::string& word, bool& takes_next, std::optional<std::string>& unknown) {
  takes_next = false;
  if (word.rfind("--", 0) == 0) {
    const size_t equals = word.find('=');
    const std::string name = word.substr(0, equals);
    const CLI::Option* option = find_option(command, name);
    if (option == nullptr) unknown = unknown_option(command, name);
    else takes_next = equals == std::string::npos && option->get_expected_min() > 0;
    return option != nullptr;
  }
  // -qp: flags one after another; -ofile: an option and its value.
  for (size_t i = 1; i < word.size(); i++) {
    const std::string name = std::string("-") + word[i];
    const CLI::Option* option = find_option(command, name);
    if (option == nullptr) {
      unknown = unknown_option(command, i == 1 ? word.substr(0, word.find('=')) : name);
      return false;
    }
    if (option->get_expected_min() > 0) {
      takes_next = i + 1 == word.size();
      return true;
    }
  }
  return true;
}

Scan scan(const CLI::App& app, const std::vector<std::string>& args) {
  Scan result{&app, std::nullopt};
  for (size_t i = 0; i < args.size(); i++) {
    const std::string& word = args[i];
    if (word == "--") break;  // the rest are positionals
    if (word.size() > 1 && word[0] == '-') {
      bool takes_next = false;
      if (!known_option(*result.command, word, takes_next, result.unknown)) return result;
      if (takes_next) i++;
      continue;
    }
    if (const CLI::App* command = find_command(*result.command, word)) {
      result.command = command;
      continue;
    }
    // A word where only a command may stand: a mistyped command.
    const bool takes_positionals =
        !result.command->get_options([](const CLI::Option* o) { return o->get_positional(); }).empty();
    if (!takes_positionals && !command_names(*result.command).empty()) {
      result.unknown = fmt::format("{}unknown command '{}'{}", prefix(*result.command), word,
                                   command_hint(*result.command, word));
      return result;
    }
  }
  return result;
}

// CLI11's message on one line, and in troy's words where they mislead.
std::string cli11_message(const CLI::App& command, const CLI::ParseError& error) {
  std::string message = error.what();
  for (char& c : message)
    if (c == '\n') c = ' ';
  const std::vector<std::string> commands = command_names(command);
  if (!commands.empty() && command.get_require_subcommand_min() > 0)  // the scan found none of them
    message = fmt::format("a command is required: {}", fmt::join(commands, ", "));
  const std::string path = command_path(command);
  return fmt::format("{}{} ({})", prefix(command), message, path.empty() ? "troy help" : "troy help " + path);
}

}  // namespace

const CLI::App* find_command(const CLI::App& app, const std::string& name) {
  for (const CLI::App* command : app.get_subcommands([](const CLI::App* c) { return !c->get_name().empty(); }))
    if (command->check_name(name)) return command;
  return nullptr;
}

std::string command_hint(const CLI::App& app, const std::string& word) {
  const std::optional<std::string> near = nearest(word, command_names(app));
  if (near) return fmt::format("; did you mean '{}'?", *near);
  const std::string path = command_path(app);
  return fmt::format("; {} lists the commands", path.empty() ? "troy help" : "troy help " + path);
}

std::string command_path(const CLI::App& command) {
  if (command.get_parent() == nullptr) return "";
  const std::string above = command_path(*command.get_parent());
  return above.empty() ? command.get_name() : above + " " + command.get_name();
}

std::string parse_error_message(const CLI::App& app, const std::vector<std::string>& args,
                                const CLI::ParseError& error) {
  const Scan found = scan(app, args);
  if (found.unknown) return *found.unknown;
  return cli11_message(*found.command, error);
}

}  // namespace troy::cli
