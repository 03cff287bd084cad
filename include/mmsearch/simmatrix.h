// Similarity matrices over an indexed scope, grouped by category, and their CSV form.
// Drawing them (heatmaps) is in render.h.
//
// Usage:
//   const SimilarityMatrix m = build_similarity_matrix(store, manifest, model_id, scope, kind);
//   write_similarity_csv(m, "out.csv");
//   write_heatmap_png(m, "out.png");  // render.h
//
// Nothing here prints.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "mmsearch/rules.h"

namespace mmsearch {

class IndexStore;
struct Manifest;

struct SimilarityMatrix {
  std::string model;  // shown in the title, e.g. "blip2-pretrain"
  SimilarityKind kind = SimilarityKind::kImageImage;
  std::vector<std::string> row_labels;
  std::vector<std::string> row_categories;  // same length as row_labels (may hold "")
  std::vector<std::string> col_labels;
  std::vector<std::string> col_categories;
  std::vector<float> scores;  // row-major, row_labels.size() x col_labels.size()
};

// Throws Error(kUsage) when the label, category and score counts do not agree.
void check_matrix_sizes(const SimilarityMatrix& matrix);

// Rows and columns sorted stably by category name (so items keep their order inside a
// category), scores permuted to match. Throws Error(kUsage) on inconsistent sizes.
SimilarityMatrix grouped_by_category(const SimilarityMatrix& matrix);

// The matrix of one kind over the vectors `model_id` stored for `scope` (an index path, see
// normalize_index_path), scored by the manifest's rule for that kind (matrix_rule), grouped by
// category. Labels are paths relative to the scope (so red/0.png and blue/0.png stay apart),
// with " #N" for the N-th caption of a file. Throws Error(kIndex) when the scope holds no
// vectors of the model, or no captions for a kind that needs them.
SimilarityMatrix build_similarity_matrix(const IndexStore& store, const Manifest& manifest,
                                         const std::string& model_id,
                                         const std::filesystem::path& scope, SimilarityKind kind);

// CSV (RFC 4180, through libcsv): a header row "label,<column labels...>", then one row per
// matrix row: its label and its scores (%.6f). Labels are always quoted, quotes doubled, so
// commas, quotes, line breaks and any UTF-8 survive. Written in the matrix's order (grouped
// by category when it came from build_similarity_matrix). Throws Error(kInput) when the file
// cannot be written.
void write_similarity_csv(const SimilarityMatrix& matrix, const std::filesystem::path& path);

}  // namespace mmsearch
