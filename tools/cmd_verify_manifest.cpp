// troy verify-manifest: what the boot payload runs before it trusts a byte
// of the lab's manifest: the Ed25519 signature over its exact bytes, then its
// syntax (manifest.h). --print hands the verified bytes on, so the payload
// reads only what was verified.
#include <cstdio>

#include <fmt/format.h>

#include "command_report.h"
#include "common.h"
#include "manifest.h"
#include "signature.h"

namespace troy::cli {
namespace {

struct VerifyOptions {
  std::string key;
  std::string manifest;
  std::string signature;  // default: MANIFEST.sig
  bool print = false;
  ReportOptions report;
};

Result<std::string> verify_manifest(const VerifyOptions& options) {
  TROY_ASSIGN(key, load_ed25519_key(options.key, true));
  TROY_ASSIGN(text, read_manifest_file(options.manifest));
  const std::string signature_path = options.signature.empty() ? options.manifest + ".sig" : options.signature;
  TROY_ASSIGN(signature, read_manifest_file(signature_path));
  TROY_TRY(verify(key, std::as_bytes(std::span(text)), signature, signature_path));
  TROY_TRY(parse_manifest(text, options.manifest));
  return text;
}

}  // namespace

void register_verify_manifest(CLI::App& app, int& exit_code, const Console& console) {
  auto options = std::make_shared<VerifyOptions>();
  CLI::App* command = app.add_subcommand(
      "verify-manifest", "Check a lab manifest's Ed25519 signature and syntax; silent and exit 0 when good");
  command->add_option("--key", options->key, "The lab's public key (PEM)")->required();
  command->add_option("--signature", options->signature, "The signature file (default: MANIFEST.sig)");
  auto* print = command->add_flag("--print", options->print, "Print the manifest on stdout once it verified");
  command->add_option("MANIFEST", options->manifest, "The manifest")->required();
  // Silent when good, as the boot payload wants: no summary line, so no --stats.
  add_report_options(*command, options->report, false);
  command->get_option("--json")->excludes(print);
  command->callback([options, &exit_code, &console] {
    CommandReport report("verify-manifest", options->report, console);
    Json& json = report.json();
    json["manifest"] = options->manifest;
    json["signature"] = options->signature.empty() ? options->manifest + ".sig" : options->signature;
    json["key"] = options->key;
    auto text = verify_manifest(*options);
    json["verified"] = text.ok();
    if (text && options->print) std::fwrite(text->data(), 1, text->size(), stdout);
    exit_code = report.finish(text ? kExitOk : report.fail(text.error()));
  });
}

}  // namespace troy::cli
