// What troy says when its command line does not parse: one line naming the
// word it did not know and the nearest one it does. CLI11's own messages
// name neither ("A subcommand is required" for `troy infoo x`, "The
// following arguments were not expected: x.vhdx --typ" for a mistyped
// option), so the arguments are read again here to find the culprit.
#pragma once

#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace troy::cli {

// The message to print after "troy: error: " for `error`, raised by
// app.parse(args) (args without the program name): "unknown command
// 'infoo'; did you mean 'info'?", "capture: unknown option '--typ'; did you
// mean '--type'?", or CLI11's message on one line, after the command's name.
std::string parse_error_message(const CLI::App& app, const std::vector<std::string>& args,
                                const CLI::ParseError& error);

// The subcommand of `app` named `name` (not an option group), or nullptr.
const CLI::App* find_command(const CLI::App& app, const std::string& name);

// "; did you mean 'info'?" for the command of `app` nearest to `word`, or "".
std::string command_hint(const CLI::App& app, const std::string& word);

// "lab report": the command's words after troy ("" for troy itself).
std::string command_path(const CLI::App& command);

}  // namespace troy::cli

namespace troy::cli {

// troy help [COMMAND...]: the help of troy or of a command, on stdout, exit
// 0, as `troy COMMAND --help` prints it (cmd_help.cpp).
void register_help(CLI::App& app, int& exit_code);

}  // namespace troy::cli
