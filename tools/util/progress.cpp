#include "progress.h"

#include <unistd.h>

#include <fmt/format.h>

namespace troy::cli {
namespace {

constexpr auto kRedrawEvery = std::chrono::milliseconds(200);

std::string mib(double bytes) { return fmt::format("{:.0f} MiB", bytes / (1 << 20)); }

}  // namespace

Progress::Progress(std::string what, uint64_t total)
    : what_(std::move(what)), total_(total), enabled_(::isatty(STDERR_FILENO) == 1),
      started_(std::chrono::steady_clock::now()), last_(started_) {}

Progress::~Progress() { finish(); }

void Progress::update(uint64_t done) {
  if (!enabled_ || total_ == 0) return;
  const auto now = std::chrono::steady_clock::now();
  if (now - last_ < kRedrawEvery && done < total_) return;
  last_ = now;
  const double seconds = std::chrono::duration<double>(now - started_).count();
  const double rate = seconds > 0 ? static_cast<double>(done) / seconds : 0;
  const double left = rate > 0 ? static_cast<double>(total_ - done) / rate : 0;
  constexpr int kBarWidth = 30;
  const int filled = static_cast<int>(kBarWidth * done / total_);
  fmt::print(stderr, "\r{} [{}{}] {:3}% {} of {}, {}/s, {:.0f} s left \x1b[K", what_, std::string(filled, '#'),
             std::string(kBarWidth - filled, '.'), 100 * done / total_, mib(static_cast<double>(done)),
             mib(static_cast<double>(total_)), mib(rate), left);
  shown_ = true;
}

void Progress::finish() {
  if (shown_) fmt::print(stderr, "\r\x1b[K");
  shown_ = false;
}

}  // namespace troy::cli
