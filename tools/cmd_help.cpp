// troy help [COMMAND...]: what `troy --help` and `troy COMMAND --help` print,
// for those who type help as a command, as git and apt accept it.
#include <fmt/format.h>

#include "common.h"
#include "parse_error.h"

namespace troy::cli {
namespace {

// The help of the command the words name (none: troy itself), or an
// unknown-command error with the nearest name.
Result<std::string> help_text(const CLI::App& app, const std::vector<std::string>& words) {
  const CLI::App* command = &app;
  std::string usage = app.get_name();
  for (const std::string& word : words) {
    const CLI::App* next = find_command(*command, word);
    if (next == nullptr) {
      const std::string path = command_path(*command);
      return Error{fmt::format("help: unknown command '{}'{}", path.empty() ? word : path + " " + word,
                               command_hint(*command, word))};
    }
    command = next;
    usage += " " + word;
  }
  // The formatter itself: App::help() would show the selected subcommand,
  // which is this one.
  return command->get_formatter()->make_help(command, usage, CLI::AppFormatMode::Normal);
}

}  // namespace

void register_help(CLI::App& app, int& exit_code) {
  auto words = std::make_shared<std::vector<std::string>>();
  CLI::App* help = app.add_subcommand("help", "Print this help, or a command's (troy help COMMAND, as troy COMMAND "
                                              "--help)");
  help->add_option("COMMAND", *words, "The command (lab report: both words)");
  help->callback([words, &app, &exit_code] {
    auto text = help_text(app, *words);
    if (!text) {
      exit_code = fail(text.error());
      return;
    }
    fmt::print("{}", *text);
  });
}

}  // namespace troy::cli
