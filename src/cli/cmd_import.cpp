// `mmsearch import DIR --model NAME`: vectors computed elsewhere into the index (the format is
// in models/README.md, "Vector import/export format"; the work is in vector_import.h).
#include <spdlog/spdlog.h>

#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "json_output.h"
#include "mmsearch/vector_import.h"
#include "progress.h"

namespace mmsearch::cli {
namespace {

struct ImportArgs {
  std::string dir;
  std::string model;
  std::string root;
  std::size_t batch_size = 0;
  bool dry_run = false;
  bool skip_checksums = false;
  bool any_model = false;
  bool json = false;
  std::string vectors = "fp16";
  std::string ann = "auto";
};

nlohmann::json import_json(const VectorFolder& folder, const VectorImportSummary& summary,
                           bool dry_run) {
  nlohmann::json arrays = nlohmann::json::array();
  for (VectorKind kind : folder.kinds) arrays.push_back(to_string(kind));
  return {{"dir", folder.dir.string()},
          {"root", folder.root.string()},
          {"model", folder.model_id},
          {"items", summary.items},
          {"captions", summary.captions},
          {"local_files", summary.local_files},
          {"arrays", arrays},
          {"dtype", folder.dtype == "<f2" ? "float16" : "float32"},
          {"batches", summary.batches},
          {"seconds", summary.seconds},
          {"items_per_second", summary.seconds > 0 ? summary.items / summary.seconds : 0.0},
          {"dry_run", dry_run},
          {"warnings", folder.warnings}};
}

int run_import(const GlobalOptions& global, const ImportArgs& args) {
  const Bundle bundle = open_bundle(global, args.model);
  VectorImportOptions options;
  options.root = args.root;
  options.verify_checksums = !args.skip_checksums;
  options.any_model = args.any_model;
  const VectorFolder folder =
      open_vector_folder(args.dir, bundle.manifest(), bundle.identity(), options);
  for (const auto& warning : folder.warnings) spdlog::warn("{}", warning);
  std::optional<IndexStore> store;
  if (!args.dry_run) {
    store.emplace(default_index_path());
    store->set_vector_encoding(vector_encoding_from_string(args.vectors));
  }
  Progress progress("importing", !global.quiet);
  const VectorImportSummary summary =
      import_vectors(folder, store ? &*store : nullptr, args.batch_size,
                     [&](const VectorProgress& p) { progress.update(p.done, p.total, p.done); });
  progress.finish();
  std::optional<AnnInfo> ann;
  if (store) ann = apply_ann_policy(*store, folder.model_id, args.ann);
  if (args.json) {
    nlohmann::json j = import_json(folder, summary, args.dry_run);
    j["ann_built"] = ann_json(ann);
    std::cout << json_text(j) << "\n";
  } else {
    std::printf("%s %lld items, %lld captions with %s%s (%.1f s, %.0f items/s)\n",
                args.dry_run ? "checked" : "imported", static_cast<long long>(summary.items),
                static_cast<long long>(summary.captions), bundle.manifest().name.c_str(),
                args.dry_run ? "; nothing written (--dry-run)" : "", summary.seconds,
                summary.seconds > 0 ? summary.items / summary.seconds : 0.0);
  }
  return kExitOk;
}

}  // namespace

Command register_import(CLI::App& root, GlobalOptions& global) {
  auto* app = root.add_subcommand("import", "Store vectors computed elsewhere in the index");
  app->footer(
      "DIR holds metadata.jsonl (line i: {\"file\": ..., \"captions\": [...], \"category\": "
      "...}),\n"
      "image_proj.npy [N,Q,E] float32 or float16, optionally text_proj.npy, image_embed.npy,\n"
      "multimodal.npy and format.json, as written by 'mmsearch export-vectors' (models/README.md,\n"
      "\"Vector import/export format\"). Files need not exist on this machine. Each batch is one\n"
      "transaction and a rerun replaces by path, so an interrupted import is simply rerun.\n"
      "Exit codes: 3 bad or damaged folder (the file, line or row is named), 4 unknown model or\n"
      "vectors of another model, 5 index problem.\n"
      "Examples:\n"
      "  mmsearch import ./vectors --model blip2-coco\n"
      "  mmsearch import ./vectors --model blip-base --root /mnt/photos --json\n"
      "  mmsearch import ./vectors --model blip-base --dry-run");
  auto args = std::make_shared<ImportArgs>();
  app->add_option("dir", args->dir, "Folder of vectors")->required();
  app->add_option("--model,-m", args->model, "Model bundle the vectors were computed with")
      ->required();
  app->add_option("--root", args->root,
                  "Folder that relative \"file\" paths are under (default: DIR)");
  app->add_option("--batch-size", args->batch_size,
                  "Items per store transaction (default: 16384, fewer for large vectors)")
      ->check(CLI::Range(1, 1 << 20));
  app->add_flag("--dry-run", args->dry_run, "Check every line and row, write nothing");
  app->add_option("--vectors", args->vectors,
                  "How the vectors are stored: fp16 (default), fp32 (exact) or int8")
      ->check(CLI::IsMember({"fp16", "fp32", "int8"}));
  app->add_flag("--skip-checksums", args->skip_checksums,
                "Do not verify the files against format.json's checksums");
  app->add_flag("--any-model", args->any_model,
                "Accept vectors that format.json says another model identity computed");
  app->add_flag("--json", args->json, "Print the summary as JSON");
  add_ann_option(app, args->ann);
  return {app, [&global, args]() { return run_import(global, *args); }};
}

}  // namespace mmsearch::cli
