// mmsearch: offline multimodal search with BLIP / BLIP-2. This file only parses the global
// options, dispatches to the chosen subcommand and maps errors to exit codes.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <thread>

#include "cli.h"
#include "mmsearch/error.h"

namespace {

int exit_code_for(mmsearch::ErrorKind kind) {
  using mmsearch::ErrorKind;
  using namespace mmsearch::cli;
  switch (kind) {
    case ErrorKind::kUsage:
      return kExitUsage;
    case ErrorKind::kInput:
      return kExitInput;
    case ErrorKind::kModel:
      return kExitModel;
    case ErrorKind::kIndex:
      return kExitIndex;
    case ErrorKind::kInternal:
      return kExitInternal;
  }
  return kExitInternal;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace mmsearch::cli;
  // Logs go to stderr so that stdout carries only results.
  spdlog::set_default_logger(spdlog::stderr_color_mt("mmsearch"));
  spdlog::set_pattern("%^%l%$: %v");

  CLI::App app{"mmsearch: offline multimodal search over your photos with BLIP / BLIP-2",
               "mmsearch"};
  app.set_version_flag("--version", std::string(MMSEARCH_VERSION));
  app.require_subcommand(1);
  app.footer(
      "Exit codes: 0 ok, 1 internal error, 2 bad usage, 3 unreadable input, 4 model problem, "
      "5 index problem, 6 finished with some inputs failed.\n"
      "Run 'mmsearch COMMAND --help' for a command's options and examples.");

  GlobalOptions global;
  add_global_options(&app, global);
  std::vector<Command> commands = {
      register_models(app, global), register_tokenize(app, global),
      register_embed(app, global),  register_index(app, global),
      register_query(app, global),  register_simmatrix(app, global),
      register_eval(app, global),   register_translate(app, global),
      register_import(app, global), register_export_vectors(app, global),
      register_ann(app, global),    register_serve(app, global),
  };
  // Global options are accepted on either side of the subcommand, and each subcommand's help
  // lists them.
  for (auto& command : commands) add_global_options(command.app, global);
  keep_arguments_verbatim(app);

  try {
    app.parse(verbatim_arguments(argc, argv));
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);  // prints help / the error in CLI11's words
    return code == 0 ? kExitOk : kExitUsage;
  }

  spdlog::set_level(global.verbose ? spdlog::level::debug
                    : global.quiet ? spdlog::level::err
                                   : spdlog::level::info);
  const int threads =
      global.threads > 0 ? global.threads : static_cast<int>(std::thread::hardware_concurrency());
  mmsearch::configure_memory_allocator();
  try {
    resolve_dtype(global);
    mmsearch::configure_threads(threads, mmsearch::parse_inference_dtype(global.dtype));
  } catch (const mmsearch::Error& e) {
    spdlog::error("{}", e.what());
    return exit_code_for(e.kind());
  }

  for (auto& command : commands) {
    if (!command.app->parsed()) continue;
    try {
      return command.run();
    } catch (const mmsearch::Error& e) {
      spdlog::error("{}", e.what());
      return exit_code_for(e.kind());
    } catch (const std::exception& e) {
      spdlog::error("internal error: {}", e.what());
      return kExitInternal;
    }
  }
  return kExitUsage;
}
