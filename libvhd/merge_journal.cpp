#include "merge_journal.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

namespace troy {
namespace {

namespace fs = std::filesystem;

constexpr const char* kMagic = "troy-merge-journal 1";

std::string hex_of(const Guid& id) {
  std::string out;
  for (const uint8_t byte : id) out += fmt::format("{:02x}", byte);
  return out;
}

std::optional<Guid> guid_of_hex(const std::string& text) {
  if (text.size() != 32) return std::nullopt;
  Guid id{};
  for (size_t i = 0; i < id.size(); i++) {
    unsigned value = 0;
    if (std::sscanf(text.c_str() + 2 * i, "%2x", &value) != 1) return std::nullopt;
    id[i] = static_cast<uint8_t>(value);
  }
  return id;
}

std::optional<MergeStage> stage_of(const std::string& name) {
  for (const MergeStage stage : {MergeStage::Started, MergeStage::Merging, MergeStage::Relinking})
    if (stage_name(stage) == name) return stage;
  return std::nullopt;
}

std::string folder_of(const std::string& path) {
  const std::string folder = fs::path(path).parent_path().string();
  return folder.empty() ? "." : folder;
}

Result<void> sync_folder(const std::string& folder) {
  const int fd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Error{fmt::format("{}: cannot open the folder: {}", folder, std::strerror(errno))};
  const int status = ::fsync(fd);
  const int saved = errno;
  ::close(fd);
  if (status != 0) return Error{fmt::format("{}: fsync of the folder failed: {}", folder, std::strerror(saved))};
  return success();
}

std::string render(const MergeJournal& journal) {
  std::string text = fmt::format("{}\nstage {}\nchild {}\ntarget {}\ntarget_id {}\n", kMagic, stage_name(journal.stage),
                                 journal.child, journal.target, hex_of(journal.target_id));
  if (!journal.undo.empty()) text += fmt::format("undo {}\n", journal.undo);
  for (const std::string& path : journal.relink) text += fmt::format("relink {}\n", path);
  text += fmt::format("remove {}\nend\n", journal.remove ? 1 : 0);
  return text;
}

Result<MergeJournal> parse(const std::string& path, const std::string& text) {
  auto bad = [&](const std::string& what) {
    return Error{fmt::format("{}: merge journal: {}; it was not written by this version of troy", path, what)};
  };
  std::istringstream lines(text);
  std::string line;
  if (!std::getline(lines, line) || line != kMagic) return bad("no 'troy-merge-journal 1' line");
  MergeJournal journal;
  bool ended = false;
  while (std::getline(lines, line)) {
    const size_t space = line.find(' ');
    const std::string key = line.substr(0, space);
    const std::string value = space == std::string::npos ? "" : line.substr(space + 1);
    if (key == "stage") {
      const auto stage = stage_of(value);
      if (!stage) return bad(fmt::format("unknown stage '{}'", value));
      journal.stage = *stage;
    } else if (key == "child") journal.child = value;
    else if (key == "target") journal.target = value;
    else if (key == "target_id") {
      const auto id = guid_of_hex(value);
      if (!id) return bad(fmt::format("target_id '{}' is not 32 hex digits", value));
      journal.target_id = *id;
    } else if (key == "undo") journal.undo = value;
    else if (key == "relink") journal.relink.push_back(value);
    else if (key == "remove") journal.remove = value == "1";
    else if (key == "end") ended = true;
    else return bad(fmt::format("unknown line '{}'", line));
  }
  if (!ended || journal.child.empty() || journal.target.empty()) return bad("incomplete");
  return journal;
}

}  // namespace

std::string stage_name(MergeStage stage) {
  switch (stage) {
    case MergeStage::Started: return "started";
    case MergeStage::Merging: return "merging";
    case MergeStage::Relinking: return "relinking";
  }
  return "?";
}

std::string merge_journal_path(const std::string& image_path) {
  const fs::path path(image_path);
  return (path.parent_path() / fmt::format(".{}.troy-merge", path.filename().string())).string();
}

Result<std::optional<MergeJournal>> read_merge_journal(const std::string& image_path) {
  const std::string path = merge_journal_path(image_path);
  std::error_code error;
  if (!fs::exists(path, error)) return std::optional<MergeJournal>{};
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{fmt::format("{}: cannot read the merge journal: {}", path, std::strerror(errno))};
  std::ostringstream text;
  text << in.rdbuf();
  TROY_ASSIGN(journal, parse(path, text.str()));
  return std::optional<MergeJournal>{std::move(journal)};
}

Result<void> write_merge_journal(const MergeJournal& journal) {
  const std::string path = merge_journal_path(journal.target);
  const std::string temporary = fmt::format("{}.new", path);
  const std::string text = render(journal);
  const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Error{fmt::format("{}: cannot write the merge journal: {}", temporary, std::strerror(errno))};
  const bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
  const int saved = errno;
  ::close(fd);
  if (!written) return Error{fmt::format("{}: cannot write the merge journal: {}", temporary, std::strerror(saved))};
  if (::rename(temporary.c_str(), path.c_str()) != 0)
    return Error{fmt::format("{}: cannot rename the merge journal into place: {}", path, std::strerror(errno))};
  return sync_folder(folder_of(path));
}

Result<void> remove_merge_journal(const std::string& image_path) {
  const std::string path = merge_journal_path(image_path);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT)
    return Error{fmt::format("{}: cannot remove the merge journal: {}", path, std::strerror(errno))};
  (void)::unlink(fmt::format("{}.new", path).c_str());  // left by a run killed while replacing the journal
  return sync_folder(folder_of(path));
}

}  // namespace troy
