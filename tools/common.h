// Pieces shared by the troy subcommands.
#pragma once

#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "chain.h"
#include "console.h"
#include "files.h"
#include "result.h"

namespace troy::cli {

// Exit codes, the same for every subcommand (documented in the README).
enum ExitCode : int {
  kExitOk = 0,
  kExitProblems = 1,  // `troy check` found problems
  kExitError = 2,     // bad input, bad usage, I/O error: nothing was changed
};

// --parent, --force, --ignore-checksums (ReadOptions, in files.h).
void add_read_options(CLI::App& command, ReadOptions& options);

// Prints warnings collected so far to stderr, once each (none with -q), the
// first 20 of a kind and a count of the rest, then forgets them.
void print_warnings(Diagnostics& diagnostics, const Console& console);

// The header field that holds a layer's virtual size, for messages:
// "Current Size" (VHD footer), "Virtual Disk Size" (VHDX metadata).
std::string virtual_size_field(const Layer& layer);

// Prints "troy: error: MESSAGE" (control characters escaped, so always one
// line) and returns kExitError.
int fail(const Error& error);

void register_info(CLI::App& app, int& exit_code, const Console& console);
void register_check(CLI::App& app, int& exit_code, const Console& console);
void register_publish(CLI::App& app, int& exit_code, const Console& console);
void register_verify_manifest(CLI::App& app, int& exit_code, const Console& console);
void register_lab(CLI::App& app, int& exit_code, const Console& console);
void register_convert(CLI::App& app, int& exit_code, const Console& console);
void register_create(CLI::App& app, int& exit_code, const Console& console);
void register_capture(CLI::App& app, int& exit_code, const Console& console);
void register_diff(CLI::App& app, int& exit_code, const Console& console);
void register_merge(CLI::App& app, int& exit_code, const Console& console);
void register_relink(CLI::App& app, int& exit_code, const Console& console);
void register_apply(CLI::App& app, int& exit_code, const Console& console);
void register_fingerprint(CLI::App& app, int& exit_code, const Console& console);
void register_update(CLI::App& app, int& exit_code, const Console& console);

}  // namespace troy::cli
