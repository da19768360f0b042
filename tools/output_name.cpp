#include "output_name.h"

#include <fmt/format.h>

namespace troy::cli {

CLI::Option* add_output_name(CLI::App& command, OutputName& name, const std::string& description) {
  command.add_option(name.placeholder, name.positional, description + " (or -o " + name.placeholder + ")");
  return command.add_option("-o,--output", name.option, description + " (or as the last argument)");
}

Result<std::string> chosen_output(const OutputName& name) {
  if (name.positional.empty() && name.option.empty())
    return Error{fmt::format("{}: no output named: give {} as the last argument or with -o {}", name.command,
                             name.placeholder, name.placeholder)};
  if (!name.positional.empty() && !name.option.empty() && name.positional != name.option)
    return Error{fmt::format("{}: two outputs named: {} as {} and {} with -o; give one", name.command,
                             name.positional, name.placeholder, name.option)};
  return name.positional.empty() ? name.option : name.positional;
}

}  // namespace troy::cli
