// `mmsearch eval DIR`: retrieval quality on a captioned folder, per model, to choose a model.
#include <spdlog/spdlog.h>

#include <cstdio>
#include <iostream>
#include <limits>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "json_output.h"
#include "mmsearch/error.h"
#include "mmsearch/eval.h"
#include "mmsearch/index.h"
#include "mmsearch/indexer.h"
#include "progress.h"

namespace fs = std::filesystem;

namespace mmsearch::cli {
namespace {

// A measure over no queries (one image has no other image to find; no captions, no caption
// queries) is null, not 0: nothing was measured.
nlohmann::json measured(double value, std::int64_t queries) {
  return queries > 0 ? nlohmann::json(value) : nlohmann::json();
}

nlohmann::json recall_json(const RecallAtK& r) {
  return {{"r1", measured(r.r1, r.queries)},
          {"r5", measured(r.r5, r.queries)},
          {"r10", measured(r.r10, r.queries)},
          {"queries", r.queries}};
}

// Three decimals, or "n/a" for a measure over no queries, padded to `width`.
std::string shown(const nlohmann::json& value, int width = 5) {
  char text[32];
  if (value.is_null()) {
    std::snprintf(text, sizeof text, "%-*s", width, "n/a");
  } else {
    std::snprintf(text, sizeof text, "%-*.3f", width, value.get<double>());
  }
  return text;
}

// Indexes DIR with the model (incrementally) and measures it on the stored vectors.
nlohmann::json evaluate_model(const GlobalOptions& global, const std::string& model,
                              const fs::path& dir, IndexStore& store,
                              const EvalOptions& eval_options) {
  auto encoder = open_encoder(global, model);
  const Manifest& manifest = encoder->manifest();
  IndexOptions index_options;
  Progress progress("indexing with " + manifest.name, !global.quiet);
  index_options.on_progress = [&](const IndexProgress& p) {
    progress.update(p.done, p.total, p.embedded);
  };
  const IndexSummary summary = index_folder(*encoder, store, dir, index_options);
  progress.finish();
  for (const auto& f : summary.failures) spdlog::warn("skipped {}", f.reason);

  const EvalReport report =
      evaluate_stored(store, manifest, encoder->bundle().identity(), dir, eval_options);
  nlohmann::json j;
  j["model"] = report.model;
  j["model_id"] = report.model_id;
  j["images"] = report.images;
  j["captions"] = report.captions;
  j["text_to_image"] = recall_json(report.text_to_image);
  j["image_to_text"] = recall_json(report.image_to_text);
  j["image_to_image_category_p5"] = {
      {"precision", measured(report.image_to_image.precision, report.image_to_image.queries)},
      {"queries", report.image_to_image.queries}};
  j["failed"] = summary.failed;
  // The queries asked, when they were a sample (the candidates are always all).
  j["sample"] = nullptr;
  if (report.sampled) {
    j["sample"] = {{"size", eval_options.sample},
                   {"seed", report.seed},
                   {"stratified_by", "category"},
                   {"caption_queries", report.caption_queries},
                   {"image_queries", report.image_queries}};
    spdlog::info(
        "{}: queries are a sample of {} of {} captions and {} of {} images "
        "(stratified by category, seed {})",
        report.model, report.caption_queries, report.captions, report.image_queries, report.images,
        report.seed);
  }
  return j;
}

}  // namespace

Command register_eval(CLI::App& root, GlobalOptions& global) {
  auto* app = root.add_subcommand("eval", "Measure retrieval quality of models on a folder");
  app->footer(
      "Text->image and image->text Recall@1/5/10 (an image is relevant to a caption when its own\n"
      "caption is identical), and image->image category precision@5 (the query never counts\n"
      "itself). The folder is indexed first, incrementally. Queries are scored one at a time\n"
      "(memory grows with the folder, not its square); on a large folder --sample N asks N\n"
      "caption and N image queries, stratified by category, against every candidate.\n"
      "Examples:\n"
      "  mmsearch eval ./dishes\n"
      "  mmsearch eval ./dishes --all-models --json\n"
      "  mmsearch eval ./big --sample 1000 --seed 3");
  struct Options {
    std::string dir;
    std::vector<std::string> models;
    bool all_models = false;
    bool json = false;
    EvalOptions eval;
  };
  auto options = std::make_shared<Options>();
  app->add_option("dir", options->dir, "Folder with images, captions and categories")->required();
  app->add_option("--model,-m", options->models, "Model (repeatable; default: the default)");
  app->add_flag("--all-models", options->all_models, "Every valid installed model");
  app->add_flag("--json", options->json, "Machine-readable output");
  app->add_option("--sample", options->eval.sample,
                  "Ask N caption and N image queries, stratified by category (default: all)")
      ->check(CLI::Range(std::int64_t{1}, std::numeric_limits<std::int64_t>::max()));
  app->add_option("--seed", options->eval.seed, "Seed of the sample (default 0)");

  return {app, [&global, options]() {
            std::error_code ec;
            if (!fs::is_directory(options->dir, ec)) {
              throw Error(ErrorKind::kInput, options->dir + ": not a folder");
            }
            const fs::path dir = normalize_index_path(fs::absolute(options->dir));
            std::vector<std::string> models = options->models;
            if (options->all_models) {
              for (const auto& listing :
                   discover_bundles(model_search_path(global.models_dir), false)) {
                if (listing.bundle) models.push_back(listing.name);
              }
            }
            if (models.empty()) models.push_back(default_model_name(global));
            IndexStore store(default_index_path());
            nlohmann::json reports = nlohmann::json::array();
            for (const auto& model : models)
              reports.push_back(evaluate_model(global, model, dir, store, options->eval));
            if (options->json) {
              std::cout << json_text(reports) << "\n";
              return kExitOk;
            }
            std::printf("%-18s %6s %6s  %-20s  %-20s  %s\n", "MODEL", "IMAGES", "CAPS",
                        "TEXT->IMAGE R@1/5/10", "IMAGE->TEXT R@1/5/10", "IMAGE->IMAGE P@5");
            for (const auto& r : reports) {
              const auto& t = r["text_to_image"];
              const auto& i = r["image_to_text"];
              std::printf("%-18s %6lld %6lld  %s %s %s   %s %s %s   %s\n",
                          r["model"].get<std::string>().c_str(), r["images"].get<long long>(),
                          r["captions"].get<long long>(), shown(t["r1"]).c_str(),
                          shown(t["r5"]).c_str(), shown(t["r10"]).c_str(), shown(i["r1"]).c_str(),
                          shown(i["r5"]).c_str(), shown(i["r10"]).c_str(),
                          shown(r["image_to_image_category_p5"]["precision"], 0).c_str());
            }
            for (const auto& r : reports) {
              if (r["sample"].is_null()) continue;
              std::printf(
                  "%s: sample of %lld of %lld caption queries and %lld of %lld image "
                  "queries (stratified by category, seed %llu)\n",
                  r["model"].get<std::string>().c_str(),
                  r["sample"]["caption_queries"].get<long long>(), r["captions"].get<long long>(),
                  r["sample"]["image_queries"].get<long long>(), r["images"].get<long long>(),
                  r["sample"]["seed"].get<unsigned long long>());
            }
            return kExitOk;
          }};
}

}  // namespace mmsearch::cli
