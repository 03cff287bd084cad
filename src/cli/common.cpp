#include <spdlog/spdlog.h>

#include <cstdlib>
#include <fstream>
#include <iostream>

#include "cli.h"
#include "mmsearch/error.h"
#include "mmsearch/index.h"
#include "mmsearch/query.h"
#include "mmsearch/scope_model.h"

namespace fs = std::filesystem;

namespace mmsearch::cli {
namespace {

// Starts an argument that CLI11 must not read as a list; see verbatim_arguments().
constexpr char kVerbatimMark = '\x1e';

}  // namespace

void resolve_dtype(GlobalOptions& global) {
  std::string requested = global.dtype;
  std::string source = "--dtype";
  if (requested.empty()) {
    const char* env = std::getenv("MMSEARCH_DTYPE");
    requested = env && *env ? env : "auto";
    source = env && *env ? "$MMSEARCH_DTYPE" : "the default";
  }
  if (requested != "auto" && requested != "fp32" && requested != "bf16") {
    throw Error(ErrorKind::kUsage, "MMSEARCH_DTYPE is '" + requested +
                                       "': expected auto, fp32 or bf16 (or pass --dtype)");
  }
  global.dtype = inference_dtype_name(parse_inference_dtype(requested));
  spdlog::debug("inference dtype {} ({} {}{})", global.dtype, source, requested,
                requested == "auto" ? cpu_has_native_bf16() ? ": this CPU has native bf16"
                                                            : ": this CPU has no native bf16"
                                    : "");
}

void add_global_options(CLI::App* app, GlobalOptions& global) {
  CLI::Option_group* group = app->add_option_group("Global options");
  group->add_option("--models", global.models_dir,
                    "Folder of model bundles (searched before $MMSEARCH_MODELS and ./models)");
  group->add_option("--threads", global.threads, "Cores mmsearch may use (default: all)")
      ->check(CLI::Range(0, 4096));
  group
      ->add_option("--dtype", global.dtype,
                   "Inference precision: auto (default: bf16 where the CPU has native bf16, "
                   "else fp32), fp32 or bf16; $MMSEARCH_DTYPE sets the default")
      ->check(CLI::IsMember({"auto", "fp32", "bf16"}));
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
    if (list_like || (!arg.empty() && arg.front() == kVerbatimMark))
      arg.insert(0, 1, kVerbatimMark);
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
  const char* env = std::getenv("MMSEARCH_DEFAULT_MODEL");
  const bool from_environment = name.empty() && env && *env;
  Bundle bundle = [&] {
    try {
      return find_bundle(chosen, model_search_path(global.models_dir));
    } catch (const Error& e) {
      if (!from_environment || e.kind() != ErrorKind::kModel) throw;
      throw Error(ErrorKind::kModel, std::string(e.what()) +
                                         " (the name came from $MMSEARCH_DEFAULT_MODEL; fix or "
                                         "unset it, or pass --model)");
    }
  }();
  if (!global.no_verify) bundle.verify_files(default_verify_cache());
  spdlog::debug("model {} from {}", bundle.manifest().name, bundle.dir().string());
  return bundle;
}

std::unique_ptr<Encoder> open_encoder(const GlobalOptions& global, const std::string& name) {
  return open_encoder(global, open_bundle(global, name));
}

std::unique_ptr<Encoder> open_encoder(const GlobalOptions& global, Bundle bundle) {
  return std::make_unique<Encoder>(std::move(bundle), parse_inference_dtype(global.dtype));
}

Bundle bundle_for_scope(const GlobalOptions& global, const IndexStore& store, const fs::path& scope,
                        const std::string& requested) {
  const std::string where = normalize_index_path(scope);
  const ScopeModel model =
      resolve_scope_model(store, where, model_search_path(global.models_dir), requested);
  // The model named in "run: mmsearch index ..." hints: the one asked for, else the default.
  std::string hint = model.name;
  if (hint.empty()) {
    try {
      hint = default_model_name(global);
    } catch (const Error&) {
      hint = "MODEL";
    }
  }
  const std::string reindex = "mmsearch index " + where + " --model " + hint;
  // With several models in the folder, none of them usable: every one is named, with --model.
  const std::string others = model.usages.size() > 1
                                 ? " (of " + describe_usages(model.usages) +
                                       ", none installed as indexed; pass --model NAME to choose)"
                                 : "";
  switch (model.status) {
    case ScopeModel::Status::kReady:
      break;
    case ScopeModel::Status::kNotIndexed:
      throw Error(ErrorKind::kIndex, where + " has not been indexed; run: " + reindex);
    case ScopeModel::Status::kNotIndexedWithModel:
      // (usages is empty only when a writer removed the other models meanwhile.)
      if (model.usages.empty()) {
        throw Error(ErrorKind::kIndex,
                    where + " has not been indexed with " + model.name + "; run: " + reindex);
      }
      throw Error(ErrorKind::kIndex, where + " was indexed with " + describe_usages(model.usages) +
                                         ", not with " + model.name + "; query with --model " +
                                         model_name_of(model.usages.front().model_id) +
                                         " or run: " + reindex);
    case ScopeModel::Status::kReExported:
      throw Error(
          ErrorKind::kIndex,
          where + " was indexed with " + model.indexed_id + ", an earlier export of " + model.name +
              others + "; the installed " + model.name + " is " + model.bundle->identity() +
              ", and vectors of other weights can't be searched with it. Re-index: " + reindex +
              " (then 'mmsearch index --prune' drops the old vectors)");
    case ScopeModel::Status::kNotInstalled:
      throw Error(ErrorKind::kIndex,
                  where + " was indexed with " + model.indexed_id + others +
                      ", but no bundle named " + model.name +
                      " is installed; install it (or pass --models DIR), or re-index with an "
                      "installed model: mmsearch index " +
                      where + " --model MODEL");
  }
  for (const auto& skipped : model.passed_over) {
    const std::string name = model_name_of(skipped.indexed_id);
    const std::string why =
        skipped.status == ScopeModel::Status::kReExported && skipped.installed
            ? "an earlier export of " + name + " (the installed one is " +
                  skipped.installed->identity() + "); re-index: mmsearch index " + where +
                  " --model " + name
            : "no bundle named " + name + " is installed (or pass --models DIR)";
    spdlog::warn("{}: the vectors of {} can't be searched: {}", where, skipped.indexed_id, why);
  }
  if (model.usages.size() > 1 && requested.empty()) {
    spdlog::info("{} was indexed with {}; using {} (choose another with --model)", where,
                 describe_usages(model.usages), model.indexed_id);
  }
  if (!global.no_verify) model.bundle->verify_files(default_verify_cache());
  spdlog::debug("model {} ({}) from {}", model.name, model.bundle->identity(),
                model.bundle->dir().string());
  return *model.bundle;
}

fs::path scope_folder(const std::string& in, const IndexStore& store, const std::string& flag) {
  const fs::path given = in.empty() ? fs::current_path() : fs::path(in);
  const fs::path scope = normalize_index_path(fs::absolute(given));
  std::error_code ec;
  if (fs::is_directory(given, ec)) return scope;
  if (fs::exists(given, ec)) {
    throw Error(ErrorKind::kInput, given.string() + ": not a folder; " + flag + " takes a folder");
  }
  if (store.model_ids_in_scope(scope).empty()) {
    throw Error(ErrorKind::kInput, given.string() + ": no such folder, and nothing indexed or " +
                                       "imported lies under it; check " + flag);
  }
  return scope;
}

IndexStore open_index_read_only() {
  const fs::path index_path = default_index_path();
  std::error_code ec;
  if (!fs::exists(index_path, ec)) {
    throw Error(ErrorKind::kIndex, "nothing has been indexed yet (no " + index_path.string() +
                                       "); run: mmsearch index DIR");
  }
  return IndexStore(index_path, IndexStore::Mode::kReadOnly);
}

std::string display_path(const std::string& absolute) {
  std::error_code ec;
  const fs::path cwd = fs::current_path(ec);
  if (ec) return absolute;
  const std::string prefix = normalize_index_path(cwd) + "/";
  if (absolute.rfind(prefix, 0) == 0) return absolute.substr(prefix.size());
  return absolute;
}

void add_ann_option(CLI::App* app, std::string& policy) {
  app->add_option("--ann", policy,
                  "Approximate-search index: auto (build from 1,000,000 items, rebuild when 10% "
                  "are outside it), build (now), off")
      ->check(CLI::IsMember({"auto", "build", "off"}));
}

std::optional<AnnInfo> apply_ann_policy(IndexStore& store, const std::string& model_id,
                                        const std::string& policy) {
  if (policy == "off") return std::nullopt;
  if (policy == "build") {
    const auto existing = store.ann_info(model_id, VectorKind::kImageProj);
    return store.build_ann(model_id, VectorKind::kImageProj, existing ? existing->lists : 0);
  }
  return store.refresh_ann(model_id);
}

nlohmann::json ann_json(const std::optional<AnnInfo>& built) {
  if (!built) return nullptr;
  return {{"entries", built->entries}, {"lists", built->lists}, {"bytes", built->bytes}};
}

}  // namespace mmsearch::cli
