// How troy talks to whoever ran it: a person at a terminal, a script, cron,
// the boot payload's screen. Made once in main() from the global options
// (-q, -p) and the environment, and handed to every command, so no part of
// troy keeps it in a global.
#pragma once

namespace troy::cli {

struct Console {
  bool quiet = false;           // -q/--quiet: errors only
  bool force_progress = false;  // -p/--progress: the progress line even without a terminal
  bool terminal = false;        // standard error is a terminal
  bool dumb = false;            // TERM is dumb or unset: no escape sequences

  // What the environment says (isatty, TERM); the flags stay off.
  static Console detect();
  // Whether a progress line is drawn at all.
  bool shows_progress() const { return !quiet && (terminal || force_progress); }
  // Whether the line may be redrawn in place with escape sequences.
  bool redraws() const { return terminal && !dumb; }
};

}  // namespace troy::cli
