#include <spdlog/spdlog.h>

#include <cstdlib>

#include "cli.h"
#include "mmsearch/error.h"

namespace fs = std::filesystem;

namespace mmsearch::cli {

fs::path user_data_dir() {
  if (const char* home = std::getenv("MMSEARCH_HOME"); home && *home) return home;
  if (const char* xdg = std::getenv("XDG_DATA_HOME"); xdg && *xdg) {
    return fs::path(xdg) / "mmsearch";
  }
  const char* home = std::getenv("HOME");
  return fs::path(home && *home ? home : ".") / ".local" / "share" / "mmsearch";
}

std::string default_model_name(const GlobalOptions& global) {
  if (const char* env = std::getenv("MMSEARCH_DEFAULT_MODEL"); env && *env) return env;
  const auto listings = discover_bundles(model_search_path(global.models_dir), false);
  for (const auto& listing : listings) {
    if (listing.name == "dishes-tiny" && listing.bundle) return listing.name;
  }
  std::vector<std::string> valid;
  for (const auto& listing : listings) {
    if (listing.bundle) valid.push_back(listing.name);
  }
  if (valid.size() == 1) return valid.front();
  throw Error(ErrorKind::kUsage,
              valid.empty() ? "no model bundle found; export one with scripts/export_models.py "
                              "or pass --models DIR"
                            : "several models are installed; choose one with --model (see "
                              "'mmsearch models') or set MMSEARCH_DEFAULT_MODEL");
}

Bundle open_bundle(const GlobalOptions& global, const std::string& name) {
  const std::string chosen = name.empty() ? default_model_name(global) : name;
  Bundle bundle = find_bundle(chosen, model_search_path(global.models_dir));
  if (!global.no_verify) bundle.verify_files(user_data_dir() / "verified-bundles.json");
  spdlog::debug("model {} from {}", bundle.manifest().name, bundle.dir().string());
  return bundle;
}

std::unique_ptr<Encoder> open_encoder(const GlobalOptions& global, const std::string& name) {
  return std::make_unique<Encoder>(open_bundle(global, name), parse_inference_dtype(global.dtype));
}

}  // namespace mmsearch::cli
