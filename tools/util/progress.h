// The progress line on stderr. How it is drawn depends on the Console:
// redrawn in place on a terminal (with an escape sequence to clear the rest
// of the line, or with '\r' and spaces when TERM is dumb or unset); with -p
// and no terminal (the boot payload's log, a pipe), a plain line at each
// tenth done or every few seconds; with -q, or no terminal and no -p, none.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "console.h"

namespace troy::cli {

// A byte count short enough for a line redrawn many times a second:
// "812 KiB", "512 MiB", "1.5 GiB", "2.0 TiB".
std::string short_bytes(double bytes);
// A duration as h:mm:ss ("0:00:07", "1:30:00"), rounded to the second.
std::string clock_duration(double seconds);
// The line without its bar: " 42% 1.5 GiB of 3.6 GiB, 512 MiB/s, 0:00:04 left"
// after `seconds` of work; the time left only once a rate is known.
std::string progress_figures(uint64_t done, uint64_t total, double seconds);

class Progress {
 public:
  Progress(std::string what, uint64_t total, const Console& console);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;
  // `done` bytes of `total`: cumulative, never an offset on the disk.
  void update(uint64_t done);
  // Clears a redrawn line before the summary is printed.
  void finish();

 private:
  enum class Mode { Off, Redraw, Pad, Lines };
  static Mode mode_for(const Console& console);
  bool due(uint64_t done, std::chrono::steady_clock::time_point now) const;
  std::string text(uint64_t done, double seconds) const;

  std::string what_;
  uint64_t total_;
  Mode mode_;
  ProgressListener* listener_;
  bool shown_ = false;
  size_t drawn_ = 0;    // Pad: the length of the line on screen, to blank it
  int last_tenth_ = -1;  // Lines: the last tenth printed
  std::chrono::steady_clock::time_point started_;
  std::chrono::steady_clock::time_point last_;
};

}  // namespace troy::cli
