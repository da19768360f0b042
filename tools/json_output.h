// What troy prints when a command ends: the short summary line, the
// `--stats` details and the `--json` object, the same way for every command.
//
// The --json conventions (the README repeats them for users):
// - One JSON object on standard output, on one line, and nothing else on
//   standard output (a command whose output is data on stdout refuses --json
//   there). Human lines, warnings and errors stay on standard error.
// - Keys are snake_case. Every object has `command` (the subcommand: "info",
//   "rollback", ...), `error` (null, or the message printed after
//   "troy: error:") and `lossy_paths` (see below). On failure the object is
//   still printed, with `error` set, and the exit code is the command's
//   usual one (2).
// - Byte counts are integers whose key says bytes: amounts a run moved or
//   found are `bytes_<what>` (`bytes_read`, `bytes_written`, `bytes_stored`,
//   as merge and apply always said, and the lab server reads), sizes are
//   `<what>_bytes` (`virtual_size_bytes`, `block_size_bytes`,
//   `length_bytes`). Offsets are byte offsets, as integers.
// - Durations are `duration_seconds` (a number, milliseconds kept);
//   throughput is `bytes_per_second` (an integer), over the bytes the
//   command went through.
// - Paths are strings as given on the command line or as a chain found
//   them; ids (GUIDs) are strings in the form `troy info` shows; counts are
//   integers; yes/no facts are booleans; absent things are null.
// - File names are bytes on Linux, JSON text is UTF-8: a string that is not
//   valid UTF-8 has each invalid byte replaced by U+FFFD, and the object
//   then says `"lossy_paths": true` (false otherwise), so a script knows a
//   path it reads back is not the file's exact name. Printing never throws.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace troy::cli {

// Keys stay in the order a command sets them, so --json and --stats read
// in the order of the summary.
using Json = nlohmann::ordered_json;

// True when `text` is valid UTF-8 (no overlong forms, no surrogates).
bool valid_utf8(std::string_view text);

// True when any key or string in `value` is not valid UTF-8.
bool has_invalid_utf8(const Json& value);

// `object` as one line of JSON, with `lossy_paths` set as the conventions
// say (when `object` is an object); never throws.
std::string json_line(Json object);

// The --stats lines of `object`: "name: value", nested objects as
// "outer.inner: value", lists of plain values joined with ", ", lists of
// objects numbered ("chain.0.path: ..."); strings unquoted.
std::vector<std::string> stats_lines(const Json& object);

// Times and rates for the summary line, short, in the progress line's
// units (short_bytes, clock_duration in progress.h): "2.0 s" under a
// minute, else "0:01:02"; "55 MiB/s", "-" when no time passed.
std::string short_duration(double seconds);
std::string short_rate(uint64_t bytes, double seconds);

// "1 run", "52 runs".
std::string count_of(uint64_t count, const std::string& noun);

// bytes / seconds as an integer, 0 when no time passed.
uint64_t bytes_per_second(uint64_t bytes, double seconds);

// Seconds rounded to milliseconds, for duration_seconds.
double json_seconds(double seconds);

}  // namespace troy::cli
