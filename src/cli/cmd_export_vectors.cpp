// `mmsearch export-vectors OUT --model NAME`: the index's vectors of one model as a vector
// folder that `mmsearch import` reads (models/README.md, "Vector import/export format").
#include <spdlog/spdlog.h>

#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "mmsearch/vector_import.h"
#include "progress.h"

namespace mmsearch::cli {
namespace {

struct ExportArgs {
  std::string out;
  std::string model;
  std::string in = "/";
  std::string npy_dtype = "f32";
  std::size_t batch_size = 512;
  bool relative = false;
  bool json = false;
};

int run_export(const GlobalOptions& global, const ExportArgs& args) {
  const Bundle bundle = open_bundle(global, args.model);
  const IndexStore store = open_index_read_only();
  Progress progress("exporting", !global.quiet);
  VectorExportOptions options;
  options.half = args.npy_dtype == "f16";
  options.relative = args.relative;
  options.batch_size = args.batch_size;
  options.created_by = std::string("mmsearch ") + MMSEARCH_VERSION;
  options.on_progress = [&](const VectorProgress& p) { progress.update(p.done, p.total, p.done); };
  const VectorExportSummary summary =
      export_vectors(store, bundle.identity(), bundle.manifest(), args.in, args.out, options);
  progress.finish();
  for (const auto& warning : summary.warnings) spdlog::warn("{}", warning);
  if (args.json) {
    std::cout << nlohmann::json{{"out", args.out},
                                {"model", bundle.identity()},
                                {"items", summary.items},
                                {"captions", summary.captions},
                                {"dtype", options.half ? "float16" : "float32"},
                                {"files", summary.files},
                                {"warnings", summary.warnings},
                                {"seconds", summary.seconds}}
                     .dump(2)
              << "\n";
  } else {
    std::printf("exported %lld items, %lld captions of %s to %s (%.1f s)\n",
                static_cast<long long>(summary.items), static_cast<long long>(summary.captions),
                bundle.identity().c_str(), args.out.c_str(), summary.seconds);
  }
  return kExitOk;
}

}  // namespace

Command register_export_vectors(CLI::App& root, GlobalOptions& global) {
  auto* app = root.add_subcommand("export-vectors",
                                  "Write the index's vectors of a model to a folder for import");
  app->footer(
      "Writes OUT/metadata.jsonl, image_proj.npy, text_proj.npy, image_embed.npy, multimodal.npy\n"
      "and format.json (checksums), the format 'mmsearch import' reads. An array is left out,\n"
      "with a warning, when some file has no such vectors.\n"
      "Exit codes: 3 OUT can't be written, 4 unknown model, 5 nothing of the model under --in.\n"
      "Examples:\n"
      "  mmsearch export-vectors ./vectors --model blip2-coco\n"
      "  mmsearch export-vectors ./vectors --model blip-base --in ~/Pictures --relative "
      "--npy-dtype f16");
  auto args = std::make_shared<ExportArgs>();
  app->add_option("out", args->out, "Folder to write (created if needed)")->required();
  app->add_option("--model,-m", args->model, "Model bundle whose vectors are written")->required();
  app->add_option("--in", args->in, "Only files under this folder (default: all)");
  // Not --dtype: that global option is the inference precision.
  app->add_option("--npy-dtype", args->npy_dtype, "Element type of the arrays: f32 or f16")
      ->check(CLI::IsMember({"f32", "f16"}));
  app->add_option("--batch-size", args->batch_size, "Files read from the store at a time")
      ->check(CLI::Range(1, 1 << 20));
  app->add_flag("--relative", args->relative,
                "Write paths relative to --in (import them elsewhere with --root)");
  app->add_flag("--json", args->json, "Print the summary as JSON");
  return {app, [&global, args]() { return run_export(global, *args); }};
}

}  // namespace mmsearch::cli
