// troy info IMAGE [--json]: what an image is and what its chain looks like.
#include <map>

#include <fmt/format.h>

#include "chain.h"
#include "command_report.h"
#include "common.h"
#include "image.h"
#include "text.h"

namespace troy::cli {
namespace {

// One line of the text output on stdout. Locators, parent names and creator
// fields come from the image: printable() keeps them on their line.
template <typename... Args>
void print_line(fmt::format_string<Args...> format, Args&&... args) {
  fmt::print("{}\n", printable(fmt::format(format, std::forward<Args>(args)...)));
}

struct InfoOptions {
  std::string image;
  ReportOptions report;
  ReadOptions read;
};

void print_layer_text(const LayerInfo& info) {
  print_line("format:          {} {}", info.format, info.type);
  print_line("virtual size:    {}", human_bytes(info.virtual_size));
  print_line("sector size:     {}", info.logical_sector_size);
  if (info.block_size != 0) {
    print_line("block size:      {}", human_bytes(info.block_size));
    print_line("allocated:       {} blocks, {}", info.allocated_blocks, human_bytes(info.allocated_bytes));
  }
  print_line("file size:       {}", human_bytes(info.file_size));
  print_line("creator:         {}", info.creator);
  print_line("id:              {}", info.id);
  for (const InfoDetail& detail : info.details) print_line("{:<16} {}", detail.key + ":", detail.text);
}

Json detail_json(const InfoDetail& detail) {
  Json value = Json::object();
  for (const auto& [name, field] : detail.fields) {
    Json typed;
    std::visit([&typed](const auto& v) { typed = v; }, field);
    if (name.empty()) return typed;  // a plain value
    value[name] = std::move(typed);
  }
  return value;
}

// Typed details; repeated keys (parent locators, other regions) and the
// locators always become arrays, so a script need not test for both forms.
Json details_json(const LayerInfo& info) {
  std::map<std::string, size_t> count;
  for (const InfoDetail& detail : info.details) count[detail.key]++;
  Json details = Json::object();
  for (const InfoDetail& detail : info.details) {
    if (count[detail.key] > 1 || detail.key == "parent_locator") details[detail.key].push_back(detail_json(detail));
    else details[detail.key] = detail_json(detail);
  }
  return details;
}

Json layer_json(const LayerInfo& info, const std::string& path) {
  return Json{{"path", path},
              {"format", info.format},
              {"type", info.type},
              {"virtual_size_bytes", info.virtual_size},
              {"logical_sector_size_bytes", info.logical_sector_size},
              {"block_size_bytes", info.block_size},
              {"allocated_blocks", info.allocated_blocks},
              {"allocated_bytes", info.allocated_bytes},
              {"file_size_bytes", info.file_size},
              {"creator", info.creator},
              {"id", info.id},
              {"details", details_json(info)}};
}

Json link_json(const Link& link) {
  return Json{{"found_by", link.found_by},         {"path", link.path},
              {"verified", link.verified},         {"expected_id", link.expected_id},
              {"actual_id", link.actual_id},       {"same_id_elsewhere", link.same_id_elsewhere}};
}

// The chain array holds every layer opened, the image itself first; each
// parent carries the link by which it was found.
void fill_json(Json& out, const Chain& chain, const std::string& chain_error) {
  out["image"] = chain.top().path();
  out["chain"] = Json::array();
  for (size_t i = 0; i < chain.layers().size(); i++) {
    const Layer& layer = *chain.layers()[i];
    Json entry = layer_json(layer.info(), layer.path());
    if (i > 0) entry["link"] = link_json(chain.links()[i - 1]);
    out["chain"].push_back(std::move(entry));
  }
  out["chain_error"] = chain_error.empty() ? Json(nullptr) : Json(chain_error);
}

// What a child records about its parent, and how that parent was found.
void print_link_text(const Layer& child, const Link* found) {
  const ParentLink& wanted = *child.parent_link();
  print_line("       parent recorded: {} {}{}", wanted.expected_id_field.empty() ? "id" : wanted.expected_id_field,
             child.format_id(wanted.expected_id),
             wanted.parent_time.empty() ? "" : ", time stamp " + wanted.parent_time);
  for (const ParentLocator& locator : wanted.locators) print_line("       locator {}: {}", locator.kind, locator.path);
  if (!wanted.parent_name.empty()) print_line("       parent name: {}", wanted.parent_name);
  if (!found) {
    print_line("       parent: NOT FOUND");
    return;
  }
  print_line("       parent found by {}; link {}", found->found_by,
             found->verified ? "verified" : fmt::format("NOT verified (parent's id is {})", found->actual_id));
  print_line("       parent file: {}", found->path);
  // Copies of the parent elsewhere that the locators also name: the file
  // above was read, but a merge refuses to choose.
  for (const std::string& path : found->same_id_elsewhere) print_line("       same id also at: {}", path);
}

void print_text(const Chain& chain) {
  print_line("image:           {}", chain.top().path());
  print_layer_text(chain.top().info());
  if (chain.layers().size() < 2 && !chain.top().parent_link()) return;
  print_line("chain:           {} layers, top first", chain.layers().size());
  for (size_t i = 0; i < chain.layers().size(); i++) {
    const Layer& layer = *chain.layers()[i];
    const LayerInfo info = layer.info();
    print_line("  [{}] {}  ({} {}, id {})", i, layer.path(), info.format, info.type, info.id);
    if (layer.parent_link()) print_link_text(layer, i < chain.links().size() ? &chain.links()[i] : nullptr);
  }
}

int run_info(const InfoOptions& options, const Console& console, CommandReport& report) {
  Diagnostics diagnostics;
  const ChainOptions chain_opts = chain_options(options.read, diagnostics);
  report.json()["image"] = options.image;
  auto top = open_layer(options.image, chain_opts.open);
  if (!top) return report.fail(top.error());
  Chain chain(std::move(*top));
  const auto parents = chain.open_parents(chain_opts);
  print_warnings(diagnostics, console);
  if (options.report.json) fill_json(report.json(), chain, parents ? "" : parents.error().message);
  else print_text(chain);
  if (!parents) return report.fail(parents.error());
  return kExitOk;
}

}  // namespace

void register_info(CLI::App& app, int& exit_code, const Console& console) {
  auto options = std::make_shared<InfoOptions>();
  CLI::App* command = app.add_subcommand("info", "Show an image's format, size, allocation, ids and parent chain");
  command->add_option("IMAGE", options->image, "VHD or VHDX image (the top of a chain)")->required();
  add_report_options(*command, options->report, false);
  add_read_options(*command, options->read);
  command->callback([options, &exit_code, &console] {
    CommandReport report("info", options->report, console);
    exit_code = report.finish(run_info(*options, console, report));
  });
}

}  // namespace troy::cli
