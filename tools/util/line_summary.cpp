#include "line_summary.h"

#include <cctype>
#include <map>

#include <fmt/format.h>

namespace troy::cli {

std::string line_kind(const std::string& line) {
  std::string kind;
  size_t i = 0;
  while (i < line.size()) {
    if (!std::isalnum(static_cast<unsigned char>(line[i]))) {
      kind += line[i++];
      continue;
    }
    const size_t start = i;
    bool digits = false;
    for (; i < line.size() && std::isalnum(static_cast<unsigned char>(line[i])); i++)
      digits = digits || std::isdigit(static_cast<unsigned char>(line[i]));
    kind += digits ? std::string("#") : line.substr(start, i - start);
  }
  return kind;
}

LineSummary summarize_lines(const std::vector<std::string>& lines, size_t per_kind, size_t max_shown) {
  struct Kind {
    size_t seen = 0;
    size_t omitted = 0;
    size_t first_omitted = 0;  // index in `lines`
  };
  LineSummary summary;
  summary.total = lines.size();
  std::map<std::string, Kind> kinds;
  std::vector<const std::string*> order;  // kinds with omissions, in the order first met
  for (size_t i = 0; i < lines.size(); i++) {
    const auto [it, added] = kinds.try_emplace(line_kind(lines[i]));
    Kind& kind = it->second;
    kind.seen++;
    if (kind.seen <= per_kind && summary.shown.size() < max_shown) {
      summary.shown.push_back(lines[i]);
      continue;
    }
    if (kind.omitted++ == 0) {
      kind.first_omitted = i;
      order.push_back(&it->first);
    }
  }
  // At most per_kind summary lines too: the rest in one count.
  size_t rest = 0;
  for (size_t k = 0; k < order.size(); k++) {
    const Kind& kind = kinds.at(*order[k]);
    if (k < per_kind) summary.omitted.push_back(fmt::format("... and {} more like: {}", kind.omitted, lines[kind.first_omitted]));
    else rest += kind.omitted;
  }
  if (rest != 0) summary.omitted.push_back(fmt::format("... and {} more of other kinds", rest));
  return summary;
}

}  // namespace troy::cli
