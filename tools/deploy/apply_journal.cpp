#include "apply_journal.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>

namespace troy::cli {
namespace {

namespace fs = std::filesystem;

constexpr const char* kJournalMagic = "troy-apply-journal 1";

void fsync_folder(const fs::path& folder) {
  const int dir = ::open(folder.empty() ? "." : folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return;
  ::fsync(dir);
  ::close(dir);
}

}  // namespace

Journal Journal::open(std::string path, std::string plan_id) {
  Journal journal(std::move(path), std::move(plan_id));
  std::ifstream in(journal.path_);
  std::string magic, word, plan;
  JournalState state;
  if (std::getline(in, magic) && magic == kJournalMagic && in >> word >> plan && word == "plan" && plan == journal.plan_id_ &&
      in >> word >> state.done && word == "done" && in >> word >> state.limit && word == "limit" &&
      state.done <= state.limit)
    journal.resumed_ = state;
  return journal;
}

Result<void> Journal::record(const JournalState& state) {
  const fs::path target(path_);
  std::error_code error;
  fs::create_directories(target.parent_path().empty() ? "." : target.parent_path(), error);
  const std::string temp = path_ + ".new";
  const std::string text = fmt::format("{}\nplan {}\ndone {}\nlimit {}\n", kJournalMagic, plan_id_, state.done, state.limit);
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  const auto failed = [&] { return Error{fmt::format("{}: cannot write the progress journal: {}", path_, std::strerror(errno))}; };
  if (fd < 0) return failed();
  const bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
  ::close(fd);
  if (!written || ::rename(temp.c_str(), path_.c_str()) != 0) return failed();
  fsync_folder(target.parent_path());
  return success();
}

void Journal::remove() {
  if (::unlink(path_.c_str()) == 0) fsync_folder(fs::path(path_).parent_path());
}

std::string default_journal_path(const std::string& target, bool block_device) {
  const fs::path path(target);
  if (block_device) return (fs::path("/var/lib/troy/apply") / (path.filename().string() + ".journal")).string();
  return (path.parent_path() / fmt::format(".{}.troy-apply", path.filename().string())).string();
}

}  // namespace troy::cli
