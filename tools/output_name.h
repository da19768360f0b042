// The file a command writes, named either way: as its last positional
// (troy convert IMAGE OUT) or with -o/--output (troy diff PARENT NEW -o
// CHILD). convert, diff and fingerprint accept both, so no one has to
// remember which command wants which.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "result.h"

namespace troy::cli {

struct OutputName {
  std::string command;      // "convert", for errors
  std::string placeholder;  // "OUT", as the help shows the positional
  std::string positional;
  std::string option;       // -o/--output
};

// Adds the positional (after the command's other positionals, optional) and
// -o/--output; returns -o, for excludes().
CLI::Option* add_output_name(CLI::App& command, OutputName& name, const std::string& description);

// The one file named; an error when none is, or two different ones are.
Result<std::string> chosen_output(const OutputName& name);

}  // namespace troy::cli
