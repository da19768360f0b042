#include "suggest.h"

#include <algorithm>
#include <cctype>

namespace troy::cli {
namespace {

char lower(char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); }

std::string_view without_dashes(std::string_view word) {
  const size_t start = word.find_first_not_of('-');
  return start == std::string_view::npos ? std::string_view{} : word.substr(start);
}

size_t allowed_edits(size_t length) {
  if (length <= 2) return 0;
  return length <= 5 ? 1 : 2;
}

bool starts_with(std::string_view text, std::string_view prefix) {
  return text.size() >= prefix.size() &&
         std::equal(prefix.begin(), prefix.end(), text.begin(), [](char a, char b) { return lower(a) == lower(b); });
}

}  // namespace

// Optimal string alignment: Levenshtein plus the swap of two neighbours,
// the most common typo, as one edit.
size_t edit_distance(std::string_view a, std::string_view b) {
  const size_t columns = b.size() + 1;
  std::vector<size_t> d((a.size() + 1) * columns);
  auto at = [&](size_t i, size_t j) -> size_t& { return d[i * columns + j]; };
  for (size_t i = 0; i <= a.size(); i++) at(i, 0) = i;
  for (size_t j = 0; j <= b.size(); j++) at(0, j) = j;
  for (size_t i = 1; i <= a.size(); i++) {
    for (size_t j = 1; j <= b.size(); j++) {
      const size_t cost = lower(a[i - 1]) == lower(b[j - 1]) ? 0 : 1;
      at(i, j) = std::min({at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + cost});
      if (i > 1 && j > 1 && lower(a[i - 1]) == lower(b[j - 2]) && lower(a[i - 2]) == lower(b[j - 1]))
        at(i, j) = std::min(at(i, j), at(i - 2, j - 2) + 1);
    }
  }
  return at(a.size(), b.size());
}

std::optional<std::string> nearest(std::string_view word, const std::vector<std::string>& candidates) {
  const std::string_view name = without_dashes(word);
  if (name.empty()) return std::nullopt;
  std::optional<std::string> best;
  size_t best_distance = allowed_edits(name.size()) + 1;
  for (const std::string& candidate : candidates) {
    const size_t distance = edit_distance(name, without_dashes(candidate));
    if (distance < best_distance) {
      best = candidate;
      best_distance = distance;
    }
  }
  if (best || name.size() < 3) return best;
  std::vector<std::string> extended;
  for (const std::string& candidate : candidates)
    if (starts_with(without_dashes(candidate), name)) extended.push_back(candidate);
  if (extended.size() == 1) return extended.front();
  return std::nullopt;
}

}  // namespace troy::cli
