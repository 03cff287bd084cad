// Shared plumbing of the mmsearch command-line front end. Each subcommand lives in its own
// cmd_*.cpp and registers itself through one of the register_* functions below.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "mmsearch/bundle.h"
#include "mmsearch/encoder.h"
#include "mmsearch/index.h"

namespace mmsearch::cli {

// Documented in README "Exit codes"; keep both in step.
enum ExitCode : int {
  kExitOk = 0,
  kExitInternal = 1,
  kExitUsage = 2,
  kExitInput = 3,
  kExitModel = 4,
  kExitIndex = 5,
  kExitPartial = 6,  // the command finished but some inputs failed (listed on stderr / in --json)
};

struct GlobalOptions {
  std::string models_dir;  // --models
  int threads = 0;         // --threads, 0 = all cores
  std::string dtype;       // --dtype; resolved to "fp32" or "bf16" before any command runs
  bool verbose = false;
  bool quiet = false;
  bool no_verify = false;  // --no-verify: skip bundle sha256 checks
};

// A registered subcommand: its CLI11 node and what to run when it was chosen.
struct Command {
  CLI::App* app = nullptr;
  std::function<int()> run;
};

Command register_embed(CLI::App& root, GlobalOptions& global);
Command register_models(CLI::App& root, GlobalOptions& global);
Command register_tokenize(CLI::App& root, GlobalOptions& global);
Command register_index(CLI::App& root, GlobalOptions& global);
Command register_query(CLI::App& root, GlobalOptions& global);
Command register_simmatrix(CLI::App& root, GlobalOptions& global);
Command register_eval(CLI::App& root, GlobalOptions& global);
Command register_translate(CLI::App& root, GlobalOptions& global);
Command register_import(CLI::App& root, GlobalOptions& global);
Command register_export_vectors(CLI::App& root, GlobalOptions& global);
Command register_ann(CLI::App& root, GlobalOptions& global);
Command register_serve(CLI::App& root, GlobalOptions& global);

// Turns global.dtype into "fp32" or "bf16": --dtype, else $MMSEARCH_DTYPE, else auto (bf16 on
// CPUs with native bf16). A bad $MMSEARCH_DTYPE is a usage error naming the variable.
void resolve_dtype(GlobalOptions& global);

// --models, --threads, --dtype, --no-verify, -v and -q, in a "Global options" group of `app`.
void add_global_options(CLI::App* app, GlobalOptions& global);

// CLI11 reads an argument written "[a,b]" as the list "a", "b" (its vector syntax), which
// would silently change a caption or a query such as "[SEP][CLS]". verbatim_arguments() marks
// such arguments before parsing (in the reversed order CLI11's parse(vector) takes), and
// keep_arguments_verbatim() gives every option of `app` and its subcommands a transform that
// removes the mark, so every value reaches the library byte for byte.
std::vector<std::string> verbatim_arguments(int argc, char** argv);
void keep_arguments_verbatim(CLI::App& app);

// The texts of a text file, one per line ("-" reads standard input). A final newline ends the
// last line rather than adding an empty text; "\r\n" endings are read as "\n". Throws
// Error(kInput) naming the file when it can't be read.
std::vector<std::string> read_text_lines(const std::string& path);
// Appends read_text_lines(path) to `texts` when path is not empty (--from-file).
void append_texts_from_file(const std::string& path, std::vector<std::string>& texts);

// Finds and opens a bundle by name (or the default model when empty), verifying its hashes
// unless --no-verify was given.
Bundle open_bundle(const GlobalOptions& global, const std::string& name);
std::unique_ptr<Encoder> open_encoder(const GlobalOptions& global, const std::string& name);
std::unique_ptr<Encoder> open_encoder(const GlobalOptions& global, Bundle bundle);
// The model used when none is given: $MMSEARCH_DEFAULT_MODEL, else "dishes-tiny" when present,
// else the only installed bundle.
std::string default_model_name(const GlobalOptions& global);
// The same choice among bundles already discovered (no second walk of the search path).
std::string default_model_name(const std::vector<BundleListing>& listings);

// The bundle that answers for `scope` (resolve_scope_model(): the requested one, else the one
// that indexed the scope), hashes verified unless --no-verify. When the scope can't be searched
// with it (never indexed, indexed with other models, re-exported since, not installed) throws
// Error(kIndex) saying what happened and the command that fixes it.
Bundle bundle_for_scope(const GlobalOptions& global, const IndexStore& store,
                        const std::filesystem::path& scope, const std::string& requested);

// The user's index opened read-only, or Error(kIndex) "nothing has been indexed yet; run ...".
IndexStore open_index_read_only();

// The folder a query or simmatrix searches (`--in`, default the current folder), absolute and
// normalised. A folder that is not on this machine is taken when the store holds items under
// it (imported from elsewhere); anything else is an input error (exit 3) naming `flag`.
std::filesystem::path scope_folder(const std::string& in, const IndexStore& store,
                                   const std::string& flag);

// --ann of index and import: "auto" keeps the model's approximate-search index fresh
// (IndexStore::refresh_ann), "build" builds or rebuilds it now whatever the size, "off" leaves
// it alone. Returns the index built, if any.
void add_ann_option(CLI::App* app, std::string& policy);
std::optional<AnnInfo> apply_ann_policy(IndexStore& store, const std::string& model_id,
                                        const std::string& policy);
nlohmann::json ann_json(const std::optional<AnnInfo>& built);

// A path for display: relative to the current folder when under it, else as given.
std::string display_path(const std::string& absolute);

}  // namespace mmsearch::cli
