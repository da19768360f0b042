// How troy talks to whoever ran it: a person at a terminal, a script, cron,
// the boot payload's screen. Made once in main() from the global options
// (-q, -p) and the environment, and handed to every command, so no part of
// troy keeps it in a global.
//
// Errors are not printed through it: they are shown even with -q.
//
// Every line it prints goes through printable() (text.h): names read from
// images, file names and servers' answers cannot move the cursor, clear the
// screen or split a line.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>

#include <fmt/format.h>

#include "text.h"

namespace troy::cli {

// Told of each progress update (what, bytes done, of total), whether or not
// a line is drawn: the boot payload reports progress to the lab server
// through one (update.h). It decides itself how often it acts on them; it
// may be called from the thread doing the work.
class ProgressListener {
 public:
  virtual ~ProgressListener() = default;
  virtual void progress(const std::string& what, uint64_t done, uint64_t total) = 0;
};

struct Console {
  bool quiet = false;           // -q/--quiet: errors only
  bool force_progress = false;  // -p/--progress: the progress line even without a terminal
  bool terminal = false;        // standard error is a terminal
  bool dumb = false;            // TERM is dumb or unset: no escape sequences
  ProgressListener* listener = nullptr;  // not owned; none by default

  // What the environment says (isatty, TERM); the flags stay off.
  static Console detect();
  // Whether a progress line is drawn at all.
  bool shows_progress() const { return !quiet && (terminal || force_progress); }
  // Whether the line may be redrawn in place with escape sequences.
  bool redraws() const { return terminal && !dumb; }
  // Whether anything but errors is printed (summaries, notes, warnings).
  bool speaks() const { return !quiet; }

  // "troy: LINE" on stderr: a summary or a note of what is being done.
  // Nothing with -q, so cron mails only errors.
  template <typename... Args>
  void say(fmt::format_string<Args...> format, Args&&... args) const {
    if (speaks()) fmt::print(stderr, "troy: {}\n", printable(fmt::format(format, std::forward<Args>(args)...)));
  }
  // "troy: warning: LINE" on stderr; nothing with -q.
  template <typename... Args>
  void warn(fmt::format_string<Args...> format, Args&&... args) const {
    if (speaks()) fmt::print(stderr, "troy: warning: {}\n", printable(fmt::format(format, std::forward<Args>(args)...)));
  }
};

}  // namespace troy::cli
