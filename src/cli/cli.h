// Shared plumbing of the mmsearch command-line front end. Each subcommand lives in its own
// cmd_*.cpp and registers itself through one of the register_* functions below.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <memory>
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
  std::string dtype = "fp32";
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

// Finds and opens a bundle by name (or the default model when empty), verifying its hashes
// unless --no-verify was given.
Bundle open_bundle(const GlobalOptions& global, const std::string& name);
std::unique_ptr<Encoder> open_encoder(const GlobalOptions& global, const std::string& name);
// The model used when none is given: $MMSEARCH_DEFAULT_MODEL, else "dishes-tiny" when present,
// else the only installed bundle.
std::string default_model_name(const GlobalOptions& global);
// The same choice among bundles already discovered (no second walk of the search path).
std::string default_model_name(const std::vector<BundleListing>& listings);

// The model to use for a scope: the explicit one, else the model the scope (or a folder above
// it) was indexed with, else the default model.
std::string model_for_scope(const GlobalOptions& global, const std::string& explicit_model,
                            const std::filesystem::path& scope);

// Throws the "not indexed; run mmsearch index ..." error when no model indexed the scope, so
// that a missing index is reported before a default model is looked for.
void require_indexed_scope(const GlobalOptions& global, const IndexStore& store,
                           const std::filesystem::path& scope);

// A path for display: relative to the current folder when under it, else as given.
std::string display_path(const std::string& absolute);

}  // namespace mmsearch::cli
