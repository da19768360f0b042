// "Did you mean ...?": the word of a list nearest to a mistyped one, for
// the command line's parse errors. Pure functions, no CLI11 in sight, so
// the unit tests can try them on plain lists.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace troy::cli {

// Edits (insert, delete, replace, swap two neighbours) turning a into b,
// ignoring case: "infoo" is 1 from "info", "ifno" is 1 from "info".
size_t edit_distance(std::string_view a, std::string_view b);

// The candidate nearest to `word`, or nullopt when none is near enough to be
// a likely typo. Leading dashes are compared apart from the name, so "-type"
// finds "--type". Near enough: a name of 1-2 characters only differing in
// case (-v for -V; every other one-letter option is one edit away), 3-5
// characters within 1 edit, longer within 2; or the word is the start (3
// characters at least) of exactly one candidate ("--over" for "--overwrite").
// Ties go to the candidate listed first.
std::optional<std::string> nearest(std::string_view word, const std::vector<std::string>& candidates);

}  // namespace troy::cli
