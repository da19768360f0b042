#include "progress.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

namespace troy::cli {
namespace {

constexpr auto kRedrawEvery = std::chrono::milliseconds(200);
// Without a terminal every line stays in the log: few of them.
constexpr auto kLineEvery = std::chrono::seconds(5);
constexpr int kBarWidth = 30;
constexpr int kShortestBar = 8;
constexpr size_t kDefaultColumns = 80;
// "100% 1023 MiB of 1023 MiB, 1023 MiB/s, 10:00:00 left"
constexpr size_t kLongestFigures = 52;

// A line longer than the terminal wraps, and '\r' then redraws only its last
// row: the bar gives way first.
size_t terminal_columns() {
  winsize size{};
  if (::ioctl(STDERR_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col > 0) return size.ws_col;
  return kDefaultColumns;
}

}  // namespace

std::string short_bytes(double bytes) {
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
  if (bytes < 1024) return fmt::format("{:.0f} bytes", bytes);
  int unit = 0;
  for (bytes /= 1024; bytes >= 1024 && unit < 4; unit++) bytes /= 1024;
  // Up to MiB whole numbers are precise enough; from GiB on a tenth is 100 MiB.
  return unit < 2 ? fmt::format("{:.0f} {}", bytes, kUnits[unit]) : fmt::format("{:.1f} {}", bytes, kUnits[unit]);
}

std::string clock_duration(double seconds) {
  const uint64_t whole = seconds > 0 ? static_cast<uint64_t>(std::llround(seconds)) : 0;
  return fmt::format("{}:{:02}:{:02}", whole / 3600, whole / 60 % 60, whole % 60);
}

std::string progress_figures(uint64_t done, uint64_t total, double seconds) {
  done = std::min(done, total);
  const double rate = seconds > 0 ? static_cast<double>(done) / seconds : 0;
  std::string text = fmt::format("{:3}% {} of {}", total == 0 ? 100 : 100 * done / total,
                                 short_bytes(static_cast<double>(done)), short_bytes(static_cast<double>(total)));
  if (rate > 0)
    text += fmt::format(", {}/s, {} left", short_bytes(rate), clock_duration(static_cast<double>(total - done) / rate));
  return text;
}

Progress::Mode Progress::mode_for(const Console& console) {
  if (!console.shows_progress()) return Mode::Off;
  if (console.redraws()) return Mode::Redraw;
  return console.terminal ? Mode::Pad : Mode::Lines;
}

Progress::Progress(std::string what, uint64_t total, const Console& console)
    : what_(std::move(what)),
      total_(total),
      mode_(mode_for(console)),
      listener_(console.listener),
      started_(std::chrono::steady_clock::now()),
      last_(started_) {}

Progress::~Progress() { finish(); }

bool Progress::due(uint64_t done, std::chrono::steady_clock::time_point now) const {
  if (mode_ != Mode::Lines) return done >= total_ || now - last_ >= kRedrawEvery;
  return static_cast<int>(10 * done / total_) > last_tenth_ || now - last_ >= kLineEvery;
}

std::string Progress::text(uint64_t done, double seconds) const {
  const std::string figures = progress_figures(done, total_, seconds);
  // On a terminal the bar takes what the longest figures leave of its
  // columns, so that it keeps its width; a log has no columns to fit.
  int width = kBarWidth;
  if (mode_ != Mode::Lines) {
    const size_t rest = what_.size() + 4 + kLongestFigures + 1;  // "WHAT [", "] ", the cursor's column
    const size_t columns = terminal_columns();
    width = columns > rest ? static_cast<int>(std::min<size_t>(kBarWidth, columns - rest)) : 0;
  }
  if (width < kShortestBar) return fmt::format("{} {}", what_, figures);
  const int filled = static_cast<int>(static_cast<uint64_t>(width) * std::min(done, total_) / total_);
  return fmt::format("{} [{}{}] {}", what_, std::string(filled, '#'), std::string(width - filled, '.'), figures);
}

void Progress::update(uint64_t done) {
  if (listener_) listener_->progress(what_, done, total_);
  if (mode_ == Mode::Off || total_ == 0) return;
  const auto now = std::chrono::steady_clock::now();
  if (!due(done, now)) return;
  last_ = now;
  const std::string line = text(done, std::chrono::duration<double>(now - started_).count());
  switch (mode_) {
    case Mode::Redraw:
      fmt::print(stderr, "\r{}\x1b[K", line);
      break;
    case Mode::Pad:
      // No escape sequences on a dumb terminal: spaces blank what is left of a longer line.
      fmt::print(stderr, "\r{}{}", line, std::string(drawn_ > line.size() ? drawn_ - line.size() : 0, ' '));
      drawn_ = std::max(drawn_, line.size());
      break;
    case Mode::Lines:
      fmt::print(stderr, "{}\n", line);
      last_tenth_ = static_cast<int>(10 * std::min(done, total_) / total_);
      break;
    case Mode::Off:
      break;
  }
  std::fflush(stderr);
  shown_ = true;
}

void Progress::finish() {
  if (!shown_) return;
  if (mode_ == Mode::Redraw) fmt::print(stderr, "\r\x1b[K");
  if (mode_ == Mode::Pad) fmt::print(stderr, "\r{}\r", std::string(drawn_, ' '));
  shown_ = false;
  drawn_ = 0;
}

}  // namespace troy::cli
