#include "console.h"

#include <unistd.h>

#include <cstdlib>
#include <string_view>

namespace troy::cli {

Console Console::detect() {
  Console console;
  console.terminal = ::isatty(STDERR_FILENO) == 1;
  const char* term = std::getenv("TERM");
  console.dumb = term == nullptr || std::string_view(term).empty() || std::string_view(term) == "dumb";
  return console;
}

}  // namespace troy::cli
