#include <spdlog/spdlog.h>

#include <cstdlib>
#include <fstream>
#include <iostream>

#include "cli.h"
#include "mmsearch/error.h"
#include "mmsearch/index.h"
#include "mmsearch/query.h"

namespace fs = std::filesystem;

namespace mmsearch::cli {
namespace {

// Starts an argument that CLI11 must not read as a list; see verbatim_arguments().
constexpr char kVerbatimMark = '\x1e';

}  // namespace

void add_global_options(CLI::App* app, GlobalOptions& global) {
  CLI::Option_group* group = app->add_option_group("Global options");
  group->add_option("--models", global.models_dir,
                    "Folder of model bundles (searched before $MMSEARCH_MODELS and ./models)");
  group->add_option("--threads", global.threads, "Cores mmsearch may use (default: all)")
      ->check(CLI::NonNegativeNumber);
  group->add_option("--dtype", global.dtype, "Inference precision: fp32 or bf16")
      ->check(CLI::IsMember({"fp32", "bf16"}));
  group->add_flag("--no-verify", global.no_verify, "Skip checking bundle files against sha256");
  group->add_flag("-v,--verbose", global.verbose, "Debug logging on stderr");
  group->add_flag("-q,--quiet", global.quiet, "Only errors on stderr");
}

std::vector<std::string> verbatim_arguments(int argc, char** argv) {
  std::vector<std::string> args;
  for (int i = argc - 1; i >= 1; --i) {
    std::string arg = argv[i];
    // An argument that already starts with the mark is marked too, so that removing one mark
    // always gives back what was typed.
    const bool list_like = arg.size() >= 2 && arg.front() == '[' && arg.back() == ']';
    if (list_like || (!arg.empty() && arg.front() == kVerbatimMark)) arg.insert(0, 1, kVerbatimMark);
    args.push_back(std::move(arg));
  }
  return args;
}

void keep_arguments_verbatim(CLI::App& app) {
  const CLI::Validator unmark(
      [](std::string& value) {
        if (!value.empty() && value.front() == kVerbatimMark) value.erase(0, 1);
        return std::string();
      },
      "");
  for (CLI::Option* option : app.get_options()) option->transform(unmark);
  for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) {
    keep_arguments_verbatim(*sub);
  }
}

std::vector<std::string> read_text_lines(const std::string& path) {
  std::ifstream file;
  if (path != "-") {
    file.open(path, std::ios::binary);
    if (!file) throw Error(ErrorKind::kInput, path + ": cannot read the texts file");
  }
  std::istream& in = path == "-" ? std::cin : file;
  std::vector<std::string> texts;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    texts.push_back(std::move(line));
  }
  if (in.bad()) throw Error(ErrorKind::kInput, path + ": read error in the texts file");
  return texts;
}

void append_texts_from_file(const std::string& path, std::vector<std::string>& texts) {
  if (path.empty()) return;
  for (auto& text : read_text_lines(path)) texts.push_back(std::move(text));
}

std::string default_model_name(const GlobalOptions& global) {
  if (const char* env = std::getenv("MMSEARCH_DEFAULT_MODEL"); env && *env) return env;
  return default_model_name(discover_bundles(model_search_path(global.models_dir), false));
}

std::string default_model_name(const std::vector<BundleListing>& listings) {
  if (const char* env = std::getenv("MMSEARCH_DEFAULT_MODEL"); env && *env) return env;
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
  if (!global.no_verify) bundle.verify_files(default_data_dir() / "verified-bundles.json");
  spdlog::debug("model {} from {}", bundle.manifest().name, bundle.dir().string());
  return bundle;
}

std::unique_ptr<Encoder> open_encoder(const GlobalOptions& global, const std::string& name) {
  return std::make_unique<Encoder>(open_bundle(global, name), parse_inference_dtype(global.dtype));
}

std::string model_for_scope(const GlobalOptions& global, const std::string& explicit_model,
                            const fs::path& scope) {
  if (!explicit_model.empty()) return explicit_model;
  const fs::path index_path = default_index_path();
  std::error_code ec;
  if (fs::exists(index_path, ec)) {
    const IndexStore store(index_path, IndexStore::Mode::kReadOnly);
    const auto usages = store.models_in_scope(scope);
    if (!usages.empty()) {
      const std::string& id = usages.front().model_id;
      return id.substr(0, id.find('@'));
    }
  }
  return default_model_name(global);
}

void require_indexed_scope(const GlobalOptions& global, const IndexStore& store,
                           const fs::path& scope) {
  if (!store.models_in_scope(scope).empty()) return;
  // Say "not indexed, run ..." rather than failing to pick a default model first.
  std::string model = "MODEL";
  try {
    model = default_model_name(global);
  } catch (const Error&) {
  }
  throw_scope_not_indexed(store, normalize_index_path(scope), model);
}

std::string display_path(const std::string& absolute) {
  std::error_code ec;
  const fs::path cwd = fs::current_path(ec);
  if (ec) return absolute;
  const std::string prefix = normalize_index_path(cwd) + "/";
  if (absolute.rfind(prefix, 0) == 0) return absolute.substr(prefix.size());
  return absolute;
}

}  // namespace mmsearch::cli
