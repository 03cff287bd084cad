// `mmsearch simmatrix`: the study's cosine-similarity matrices as CSV and heatmap PNG.
#include <spdlog/spdlog.h>

#include <cstdio>
#include <filesystem>

#include "cli.h"
#include "mmsearch/error.h"
#include "mmsearch/index.h"
#include "mmsearch/render.h"
#include "mmsearch/simmatrix.h"

namespace fs = std::filesystem;

namespace mmsearch::cli {

Command register_simmatrix(CLI::App& root, GlobalOptions& global) {
  auto* app = root.add_subcommand("simmatrix", "Write a similarity matrix as CSV and heatmap PNG");
  app->footer(
      "Kinds: image-image, image-text, image-multimodal, multimodal-multimodal, text-text, or\n"
      "'all' for every kind. Rows and columns are grouped by category.\n"
      "Examples:\n"
      "  mmsearch simmatrix --model blip2-vitL --kind image-image\n"
      "  mmsearch simmatrix --in ./dishes --kind all --out figures/dishes");
  struct Options {
    std::string model;
    std::string in;
    std::vector<std::string> kinds{"image-image"};
    std::string out;
  };
  auto options = std::make_shared<Options>();
  app->add_option("--model,-m", options->model,
                  "Model (default: the one the folder was indexed with)");
  app->add_option("--in", options->in, "Folder (default: the current one)");
  app->add_option("--kind,-k", options->kinds, "Matrix kind (repeatable, or 'all')");
  app->add_option("--out,-o", options->out,
                  "Output path prefix (default: simmatrix-MODEL); KIND.csv/.png are appended");

  return {app, [&global, options]() {
            std::vector<SimilarityKind> kinds;
            for (const auto& name : options->kinds) {
              if (name == "all") {
                kinds = {SimilarityKind::kImageImage, SimilarityKind::kImageText,
                         SimilarityKind::kImageMultimodal, SimilarityKind::kMultimodalMultimodal,
                         SimilarityKind::kTextText};
                break;
              }
              kinds.push_back(similarity_kind_from_string(name));
            }
            fs::path scope = options->in.empty() ? fs::current_path() : fs::path(options->in);
            std::error_code ec;
            if (!fs::is_directory(scope, ec)) {
              throw Error(ErrorKind::kInput, scope.string() + ": not a folder");
            }
            scope = fs::absolute(scope);
            const IndexStore store = open_index_read_only();
            // Only the manifest is needed: the vectors come from the index.
            const Bundle bundle = bundle_for_scope(global, store, scope, options->model);
            const std::string prefix =
                options->out.empty() ? "simmatrix-" + bundle.manifest().name : options->out;
            if (fs::path(prefix).has_parent_path()) {
              fs::create_directories(fs::path(prefix).parent_path(), ec);
            }
            for (const SimilarityKind kind : kinds) {
              const SimilarityMatrix matrix = build_similarity_matrix(
                  store, bundle.manifest(), bundle.identity(), normalize_index_path(scope), kind);
              const std::string base = prefix + "-" + to_string(kind);
              write_similarity_csv(matrix, base + ".csv");
              write_heatmap_png(matrix, base + ".png");
              std::printf("%s: %zux%zu -> %s.csv, %s.png\n", to_string(kind),
                          matrix.row_labels.size(), matrix.col_labels.size(), base.c_str(),
                          base.c_str());
            }
            return kExitOk;
          }};
}

}  // namespace mmsearch::cli
