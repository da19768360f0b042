// troy relink IMAGE PARENT: makes a differencing image name another parent,
// e.g. the image its own parent was merged into (troy merge --remove) or a
// parent that moved. Only the parent link changes, crash-safe (VHDX through
// its log); the image's data and id stay, so its children still verify.
#include <fmt/format.h>

#include "chain.h"
#include "command_report.h"
#include "common.h"
#include "image.h"
#include "image_output.h"
#include "updater.h"
#include "writer.h"

namespace troy::cli {
namespace {

struct RelinkCommand {
  std::string image;
  std::string parent;
  ReportOptions report;
};

// The new parent must be able to be this image's parent at all: same
// sector size, not larger than the image, and not the image itself.
Result<void> check_fit(const Layer& image, const Layer& parent) {
  if (!image.parent_link()) return Error{fmt::format("{}: not a differencing image: it names no parent", image.path())};
  if (image.link_id() == parent.link_id())
    return Error{fmt::format("{}: is the image itself (same id {})", parent.path(), image.format_id(image.link_id()))};
  if (parent.logical_sector_size() != image.logical_sector_size())
    return Error{fmt::format("{}: logical sector size {} differs from {}'s {}", parent.path(),
                             parent.logical_sector_size(), image.path(), image.logical_sector_size())};
  if (parent.virtual_size() > image.virtual_size())
    return Error{fmt::format("{}: virtual size {} is larger than {}'s {}", parent.path(), parent.virtual_size(),
                             image.path(), image.virtual_size())};
  if (parent.info().format != image.info().format)
    return Error{fmt::format("{}: a {} image cannot be the parent of {} ({})", parent.path(), parent.info().format,
                             image.path(), image.info().format)};
  return success();
}

// "relative_path ..\images\master.vhdx became .\base.vhdx; volume_path ... removed"
std::string describe_changes(const std::vector<LocatorChange>& changes) {
  std::string text;
  for (const LocatorChange& change : changes) {
    text += text.empty() ? "" : "; ";
    if (change.was.empty()) text += fmt::format("{} {} added", change.field, change.becomes);
    else if (change.becomes.empty()) text += fmt::format("{} {} removed", change.field, change.was);
    else text += fmt::format("{} {} became {}", change.field, change.was, change.becomes);
  }
  return text;
}

// The id decides whether the image reads over PARENT; the locators decide
// which file a later command opens as its parent, so both must name PARENT:
// an id that matches says nothing about where the locators lead.
Json changes_json(const std::vector<LocatorChange>& changes) {
  Json list = Json::array();
  for (const LocatorChange& change : changes)
    list.push_back(Json{{"field", change.field},
                        {"was", change.was.empty() ? Json(nullptr) : Json(change.was)},
                        {"becomes", change.becomes.empty() ? Json(nullptr) : Json(change.becomes)}});
  return list;
}

Result<void> relink(const RelinkCommand& command, CommandReport& report) {
  Json& json = report.json();
  json["image"] = command.image;
  json["parent"] = command.parent;
  Diagnostics diagnostics;
  OpenOptions options;
  options.diagnostics = &diagnostics;
  TROY_ASSIGN(image, open_layer(command.image, options));
  TROY_ASSIGN(parent, open_layer(command.parent, options));
  TROY_TRY(check_fit(*image, *parent));
  const std::string id = parent->format_id(parent->link_id());
  const bool same_id = image->parent_link()->expected_id == parent->link_id();
  TROY_ASSIGN(record, parent_record(command.parent, command.image, parent->link_id()));
  const ImageFormat format = image->info().format == "vhd" ? ImageFormat::Vhd : ImageFormat::Vhdx;
  const std::vector<LocatorChange> changes = locator_changes(*image->parent_link(), recorded_link(format, record));
  json["parent_id"] = id;
  json["relative_path"] = record.relative_path;
  json["id_changed"] = !same_id;
  json["changed"] = !(same_id && changes.empty());
  json["locator_changes"] = changes_json(changes);
  if (same_id && changes.empty()) {
    report.summary(fmt::format("{} already names {} as its parent (id {}, relative path {}); nothing changed",
                               command.image, command.parent, id, record.relative_path));
    return success();
  }
  TROY_ASSIGN(updater, open_for_update(command.image));
  TROY_TRY(updater->set_parent(record));
  TROY_TRY(updater->close());
  // The locator changes stay in the line: they are what relink is run for.
  if (same_id)
    report.summary(fmt::format("{} already had {}'s id {}, but its locators did not name it; rewrote them: {}",
                               command.image, command.parent, id, describe_changes(changes)));
  else
    report.summary(fmt::format("{} now names {} as its parent (id {}, relative path {})", command.image,
                               command.parent, id, record.relative_path));
  return success();
}

}  // namespace

void register_relink(CLI::App& app, int& exit_code, const Console& console) {
  auto options = std::make_shared<RelinkCommand>();
  CLI::App* command = app.add_subcommand(
      "relink", "Make a differencing image name another parent (the image its parent was merged into, or a moved "
                "parent); troy cannot check that PARENT reads what the old parent read");
  command->add_option("IMAGE", options->image, "The differencing image to change (.vhd, .avhdx)")->required();
  command->add_option("PARENT", options->parent, "Its new parent")->required();
  add_report_options(*command, options->report);
  command->callback([options, &exit_code, &console] {
    CommandReport report("relink", options->report, console);
    const auto done = relink(*options, report);
    exit_code = report.finish(done ? kExitOk : report.fail(done.error()));
  });
}

}  // namespace troy::cli
