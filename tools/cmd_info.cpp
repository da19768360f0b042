// troy info IMAGE [--json]: what an image is and what its chain looks like.
#include <map>

#include <fmt/format.h>

#include "chain.h"
#include "common.h"
#include "image.h"
#include "text.h"

namespace troy::cli {
namespace {

struct InfoOptions {
  std::string image;
  bool json = false;
  ReadOptions read;
};

void print_layer_text(const LayerInfo& info) {
  fmt::print("format:          {} {}\n", info.format, info.type);
  fmt::print("virtual size:    {}\n", human_bytes(info.virtual_size));
  fmt::print("sector size:     {}\n", info.logical_sector_size);
  if (info.block_size != 0) {
    fmt::print("block size:      {}\n", human_bytes(info.block_size));
    fmt::print("allocated:       {} blocks, {}\n", info.allocated_blocks, human_bytes(info.allocated_bytes));
  }
  fmt::print("file size:       {}\n", human_bytes(info.file_size));
  fmt::print("creator:         {}\n", info.creator);
  fmt::print("id:              {}\n", info.id);
  for (const auto& [key, value] : info.details) fmt::print("{:<16} {}\n", key + ":", value);
}

std::string layer_json(const LayerInfo& info, const std::string& path) {
  // Repeated detail keys (parent locators) become arrays.
  std::map<std::string, std::vector<std::string>> grouped;
  std::vector<std::string> order;
  for (const auto& [key, value] : info.details) {
    if (!grouped.count(key)) order.push_back(key);
    grouped[key].push_back(value);
  }
  std::string details;
  for (const std::string& key : order) {
    const auto& values = grouped[key];
    std::string value = json_string(values[0]);
    if (values.size() > 1 || key == "parent_locator") {
      value = "[";
      for (size_t i = 0; i < values.size(); i++) value += (i ? ", " : "") + json_string(values[i]);
      value += "]";
    }
    details += fmt::format("{}{}: {}", details.empty() ? "" : ", ", json_string(key), value);
  }
  return fmt::format(
      "{{\"path\": {}, \"format\": {}, \"type\": {}, \"virtual_size\": {}, \"logical_sector_size\": {}, "
      "\"block_size\": {}, \"allocated_blocks\": {}, \"allocated_bytes\": {}, \"file_size\": {}, \"creator\": {}, "
      "\"id\": {}, \"details\": {{{}}}}}",
      json_string(path), json_string(info.format), json_string(info.type), info.virtual_size,
      info.logical_sector_size, info.block_size, info.allocated_blocks, info.allocated_bytes, info.file_size,
      json_string(info.creator), json_string(info.id), details);
}

std::string link_json(const Link& link) {
  std::string elsewhere;
  for (const std::string& path : link.same_id_elsewhere) elsewhere += (elsewhere.empty() ? "" : ", ") + json_string(path);
  return fmt::format("{{\"found_by\": {}, \"path\": {}, \"verified\": {}, \"expected_id\": {}, \"actual_id\": {}, "
                     "\"same_id_elsewhere\": [{}]}}",
                     json_string(link.found_by), json_string(link.path), link.verified ? "true" : "false",
                     json_string(link.expected_id), json_string(link.actual_id), elsewhere);
}

// The chain array holds every layer opened, the image itself first; each
// parent carries the link by which it was found.
void print_json(const Chain& chain, const std::string& chain_error) {
  std::string layers;
  for (size_t i = 0; i < chain.layers().size(); i++) {
    const Layer& layer = *chain.layers()[i];
    std::string entry = layer_json(layer.info(), layer.path());
    if (i > 0) entry.insert(entry.size() - 1, ", \"link\": " + link_json(chain.links()[i - 1]));
    layers += (i ? ",\n    " : "") + entry;
  }
  fmt::print("{{\n  \"image\": {},\n  \"chain\": [\n    {}\n  ],\n  \"chain_error\": {}\n}}\n",
             json_string(chain.top().path()), layers, chain_error.empty() ? "null" : json_string(chain_error));
}

// What a child records about its parent, and how that parent was found.
void print_link_text(const Layer& child, const Link* found) {
  const ParentLink& wanted = *child.parent_link();
  fmt::print("       parent recorded: {} {}{}\n", wanted.expected_id_field.empty() ? "id" : wanted.expected_id_field,
             child.format_id(wanted.expected_id),
             wanted.parent_time.empty() ? "" : ", time stamp " + wanted.parent_time);
  for (const ParentLocator& locator : wanted.locators) fmt::print("       locator {}: {}\n", locator.kind, locator.path);
  if (!wanted.parent_name.empty()) fmt::print("       parent name: {}\n", wanted.parent_name);
  if (!found) {
    fmt::print("       parent: NOT FOUND\n");
    return;
  }
  fmt::print("       parent found by {}; link {}\n", found->found_by,
             found->verified ? "verified" : fmt::format("NOT verified (parent's id is {})", found->actual_id));
  fmt::print("       parent file: {}\n", found->path);
  // Copies of the parent elsewhere that the locators also name: the file
  // above was read, but a merge refuses to choose.
  for (const std::string& path : found->same_id_elsewhere) fmt::print("       same id also at: {}\n", path);
}

void print_text(const Chain& chain) {
  fmt::print("image:           {}\n", chain.top().path());
  print_layer_text(chain.top().info());
  if (chain.layers().size() < 2 && !chain.top().parent_link()) return;
  fmt::print("chain:           {} layers, top first\n", chain.layers().size());
  for (size_t i = 0; i < chain.layers().size(); i++) {
    const Layer& layer = *chain.layers()[i];
    const LayerInfo info = layer.info();
    fmt::print("  [{}] {}  ({} {}, id {})\n", i, layer.path(), info.format, info.type, info.id);
    if (layer.parent_link()) print_link_text(layer, i < chain.links().size() ? &chain.links()[i] : nullptr);
  }
}

int run_info(const InfoOptions& options) {
  Diagnostics diagnostics;
  const ChainOptions chain_opts = chain_options(options.read, diagnostics);
  auto top = open_layer(options.image, chain_opts.open);
  if (!top) return fail(top.error());
  Chain chain(std::move(*top));
  const auto parents = chain.open_parents(chain_opts);
  print_warnings(diagnostics);
  if (options.json) print_json(chain, parents ? "" : parents.error().message);
  else print_text(chain);
  if (!parents) return fail(parents.error());
  return kExitOk;
}

}  // namespace

void register_info(CLI::App& app, int& exit_code, [[maybe_unused]] const Console& console) {
  auto options = std::make_shared<InfoOptions>();
  CLI::App* command = app.add_subcommand("info", "Show an image's format, size, allocation, ids and parent chain");
  command->add_option("IMAGE", options->image, "VHD or VHDX image (the top of a chain)")->required();
  command->add_flag("--json", options->json, "Machine-readable output");
  add_read_options(*command, options->read);
  command->callback([options, &exit_code] { exit_code = run_info(*options); });
}

}  // namespace troy::cli
