// A progress line on stderr when it is a terminal; silent otherwise (cron,
// the boot payload's log), so scripts get only the summary line.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace troy::cli {

class Progress {
 public:
  Progress(std::string what, uint64_t total);
  ~Progress();
  void update(uint64_t done);
  // Clears the line before the summary is printed.
  void finish();

 private:
  std::string what_;
  uint64_t total_;
  bool enabled_;
  bool shown_ = false;
  std::chrono::steady_clock::time_point started_;
  std::chrono::steady_clock::time_point last_;
};

}  // namespace troy::cli
