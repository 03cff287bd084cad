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

// Finds and opens a bundle by name (or the default model when empty), verifying its hashes
// unless --no-verify was given.
Bundle open_bundle(const GlobalOptions& global, const std::string& name);
std::unique_ptr<Encoder> open_encoder(const GlobalOptions& global, const std::string& name);
// Where per-user state lives: $MMSEARCH_HOME, else $XDG_DATA_HOME/mmsearch, else
// ~/.local/share/mmsearch.
std::filesystem::path user_data_dir();
// The model used when none is given: $MMSEARCH_DEFAULT_MODEL, else "dishes-tiny" when present,
// else the only installed bundle.
std::string default_model_name(const GlobalOptions& global);

}  // namespace mmsearch::cli
