// `mmsearch simmatrix`: the study's cosine-similarity matrices as CSV and heatmap PNG.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>

#include "cli.h"
#include "json_output.h"
#include "mmsearch/error.h"
#include "mmsearch/index.h"
#include "mmsearch/render.h"
#include "mmsearch/simmatrix.h"

namespace fs = std::filesystem;

namespace mmsearch::cli {
namespace {

struct Options {
  std::string model;
  std::string in;
  std::vector<std::string> kinds{"image-image"};
  std::string out;
  std::int64_t max_items = kHeatmapMaxItems;
  std::int64_t sample = 0;
  std::uint64_t seed = 0;
  bool csv_only = false;
  bool json = false;
};

const std::string kSampleHint = "--sample N [--seed S]";

// Flag combinations that cannot work, before anything is loaded.
void check_options(const Options& o) {
  if (o.sample > o.max_items) {
    throw Error(ErrorKind::kUsage, "--sample " + std::to_string(o.sample) + " is more than " +
                                       "--max-items " + std::to_string(o.max_items) +
                                       "; sample fewer items or raise --max-items");
  }
  if (!o.csv_only && o.sample > kHeatmapMaxItems) {
    throw Error(ErrorKind::kUsage,
                "--sample " + std::to_string(o.sample) + ": a heatmap is drawn with at most " +
                    std::to_string(kHeatmapMaxItems) +
                    " items per side; add --csv to write only the CSV, or sample at most " +
                    std::to_string(kHeatmapMaxItems));
  }
}

// Refuses a matrix too large for the limits, naming its size, the limit and the flags.
void check_size(const SimilaritySides& sides, const Options& o, const fs::path& scope) {
  const std::int64_t rows = sides.rows.size(), cols = sides.cols.size();
  const std::int64_t largest = std::max(rows, cols);
  const std::string what = std::string(to_string(sides.kind)) + " over " + scope.string() + " is " +
                           std::to_string(rows) + " x " + std::to_string(cols);
  if (largest > o.max_items) {
    throw Error(ErrorKind::kUsage,
                what + " items, more than --max-items " + std::to_string(o.max_items) +
                    " per side. Pass " + kSampleHint +
                    " to score a sample of N per side, stratified by category, or raise "
                    "--max-items (beyond " +
                    std::to_string(kHeatmapMaxItems) +
                    " only with --csv: rows x columns numbers, no picture)");
  }
  if (!o.csv_only && largest > kHeatmapMaxItems) {
    throw Error(ErrorKind::kUsage,
                what + " items, more than a heatmap shows (" + std::to_string(kHeatmapMaxItems) +
                    " per side). Pass --csv to write only the CSV (streamed), or " + kSampleHint +
                    " with N <= " + std::to_string(kHeatmapMaxItems) + " for a picture");
  }
}

}  // namespace

Command register_simmatrix(CLI::App& root, GlobalOptions& global) {
  auto* app = root.add_subcommand("simmatrix", "Write a similarity matrix as CSV and heatmap PNG");
  app->footer(
      "Kinds: image-image, image-text, image-multimodal, multimodal-multimodal, text-text, or\n"
      "'all' for every kind. Rows and columns are grouped by category.\n"
      "Above --max-items per side (default 2000) a matrix is refused: --sample N scores a\n"
      "seeded sample of N per side that keeps the categories' proportions, and --csv (with\n"
      "--max-items raised) writes only the CSV, streamed row by row, however large.\n"
      "Examples:\n"
      "  mmsearch simmatrix --model blip2-vitL --kind image-image\n"
      "  mmsearch simmatrix --in ./dishes --kind all --out figures/dishes\n"
      "  mmsearch simmatrix --in ./big --sample 1000 --seed 7\n"
      "  mmsearch simmatrix --in ./big --csv --max-items 100000");
  auto options = std::make_shared<Options>();
  app->add_option("--model,-m", options->model,
                  "Model (default: the one the folder was indexed with)");
  app->add_option("--in", options->in, "Folder (default: the current one)");
  app->add_option("--kind,-k", options->kinds, "Matrix kind (repeatable, or 'all')");
  app->add_option("--out,-o", options->out,
                  "Output path prefix (default: simmatrix-MODEL); KIND.csv/.png are appended");
  app->add_option("--max-items", options->max_items,
                  "Most items per side (default 2000; above it, --sample or refuse)")
      ->check(CLI::Range(std::int64_t{1}, std::numeric_limits<std::int64_t>::max()));
  app->add_option("--sample", options->sample,
                  "Score a sample of N items per side, stratified by category")
      ->check(CLI::Range(std::int64_t{1}, std::numeric_limits<std::int64_t>::max()));
  app->add_option("--seed", options->seed, "Seed of the sample (default 0)");
  app->add_flag("--csv", options->csv_only,
                "Write only the CSV, streamed row by row (no picture; allows > 2000 per side)");
  app->add_flag("--json", options->json, "Print a JSON summary of what was written");

  return {
      app, [&global, options]() {
        check_options(*options);
        std::vector<SimilarityKind> kinds;
        bool every_kind = false;
        for (const auto& name : options->kinds) {
          if (name == "all") {
            every_kind = true;
            kinds = {SimilarityKind::kImageImage, SimilarityKind::kImageText,
                     SimilarityKind::kImageMultimodal, SimilarityKind::kMultimodalMultimodal,
                     SimilarityKind::kTextText};
            break;
          }
          kinds.push_back(similarity_kind_from_string(name));
        }
        const IndexStore store = open_index_read_only();
        const fs::path scope = scope_folder(options->in, store, "--in");
        // Only the manifest is needed: the vectors come from the index.
        const Bundle bundle = bundle_for_scope(global, store, scope, options->model);
        const std::string prefix =
            options->out.empty() ? "simmatrix-" + bundle.manifest().name : options->out;
        // Every kind is loaded and checked before the first file is written, so a kind that
        // cannot be drawn refuses the run instead of leaving it half done. 'all' means every
        // kind the folder can give: without captions, that is image-image alone.
        auto load = [&](SimilarityKind kind) {
          return load_similarity_sides(store, bundle.manifest(), bundle.identity(), scope, kind,
                                       {options->sample, options->seed});
        };
        std::vector<std::optional<SimilaritySides>> loaded;
        std::vector<SimilarityKind> drawn;
        nlohmann::json skipped = nlohmann::json::array();
        for (const SimilarityKind kind : kinds) {
          try {
            SimilaritySides sides = load(kind);
            check_size(sides, *options, scope);
            drawn.push_back(kind);
            // A streamed CSV may be far larger than a picture: loaded again when written.
            loaded.push_back(options->csv_only ? std::nullopt
                                               : std::optional<SimilaritySides>(std::move(sides)));
          } catch (const MissingCaptions&) {
            if (!every_kind) throw;
            skipped.push_back(to_string(kind));
          }
        }
        if (!skipped.empty()) {
          std::string names;
          for (const auto& name : skipped)
            names += (names.empty() ? "" : ", ") + name.get<std::string>();
          spdlog::warn(
              "--kind all: skipped {}: {} has no captions indexed (captions.csv or "
              "sidecar .txt files)",
              names, scope.string());
        }
        if (fs::path(prefix).has_parent_path()) {
          std::error_code ec;
          fs::create_directories(fs::path(prefix).parent_path(), ec);
        }
        nlohmann::json matrices = nlohmann::json::array();
        for (std::size_t d = 0; d < drawn.size(); ++d) {
          const SimilarityKind kind = drawn[d];
          const SimilaritySides sides = loaded[d] ? std::move(*loaded[d]) : load(kind);
          loaded[d].reset();
          const std::string note = sample_note(sides);
          if (!note.empty()) spdlog::info("{}: {}", to_string(kind), note);
          const std::string base = prefix + "-" + to_string(kind);
          const std::string csv = base + ".csv", png = base + ".png";
          try {
            if (options->csv_only) {
              write_similarity_csv(sides, csv);  // one row of scores at a time
            } else {
              SimilarityMatrix matrix = compute_similarity_matrix(sides);
              write_similarity_csv(matrix, csv);
              // The title carries the sample note (render_heatmap titles "<model> — <kind>").
              if (!note.empty()) matrix.model += " (" + note + ")";
              write_heatmap_png(matrix, png);
            }
          } catch (const Error& e) {
            if (e.kind() != ErrorKind::kInput) throw;
            throw Error(e.kind(), std::string(e.what()) + " (choose another prefix with --out)");
          }
          matrices.push_back({{"kind", to_string(kind)},
                              {"rows", sides.rows.size()},
                              {"cols", sides.cols.size()},
                              {"scope_rows", sides.rows.scope_items},
                              {"scope_cols", sides.cols.scope_items},
                              {"sampled", !note.empty()},
                              {"note", note},
                              {"streamed", options->csv_only},
                              {"csv", csv},
                              {"png", options->csv_only ? nlohmann::json() : nlohmann::json(png)}});
          if (options->json) continue;
          std::string written = csv + (options->csv_only ? "" : ", " + png);
          if (!note.empty()) written += " (" + note + ")";
          std::printf("%s: %lldx%lld -> %s\n", to_string(kind),
                      static_cast<long long>(sides.rows.size()),
                      static_cast<long long>(sides.cols.size()), written.c_str());
        }
        if (options->json) {
          const nlohmann::json summary = {
              {"model", bundle.manifest().name},
              {"model_id", bundle.identity()},
              {"scope", scope.string()},
              {"max_items", options->max_items},
              {"sample", options->sample > 0 ? nlohmann::json(options->sample) : nlohmann::json()},
              {"seed", options->seed},
              {"stratified_by", "category"},
              {"matrices", matrices},
              {"skipped", skipped}};
          std::cout << json_text(summary) << "\n";
        }
        return kExitOk;
      }};
}

}  // namespace mmsearch::cli
