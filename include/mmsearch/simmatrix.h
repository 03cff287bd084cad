// Similarity matrices (CSV + heatmap PNG) and result montages (PNG), as the study's figures.
//
// Usage:
//   mmsearch::SimilarityMatrix m;            // labels, categories, scores (rows x cols)
//   m = mmsearch::grouped_by_category(m);    // rows and columns sorted stably by category
//   mmsearch::write_similarity_csv(m, "out.csv");
//   mmsearch::write_heatmap_png(m, "out.png");
//
// Drawing uses OpenCV (core, imgproc, imgcodecs) with Hershey fonts, which are ASCII only:
// labels are transliterated (common accented Latin letters lose their accent, other
// characters become '?'). Writers throw Error(kInput) when the file cannot be written and
// Error(kUsage) for inconsistent sizes. Nothing here prints.
#pragma once

#include <cstdint>
#include <filesystem>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "mmsearch/image.h"
#include "mmsearch/rules.h"

namespace mmsearch {


struct SimilarityMatrix {
  std::string model;  // shown in the title, e.g. "blip2-pretrain"
  SimilarityKind kind = SimilarityKind::kImageImage;
  std::vector<std::string> row_labels;
  std::vector<std::string> row_categories;  // same length as row_labels (may hold "")
  std::vector<std::string> col_labels;
  std::vector<std::string> col_categories;
  std::vector<float> scores;  // row-major, row_labels.size() x col_labels.size()
};

// Rows and columns sorted stably by category name (so items keep their order inside a
// category), scores permuted to match. Throws Error(kUsage) on inconsistent sizes.
SimilarityMatrix grouped_by_category(const SimilarityMatrix& matrix);

// CSV (RFC 4180): a header row "label,<column labels...>", then one row per matrix row: its
// label and its scores (%.6f). Fields with a comma, quote, CR or LF are quoted, quotes doubled.
// Written in the matrix's order (call grouped_by_category() first to match the heatmap).
void write_similarity_csv(const SimilarityMatrix& matrix, const std::filesystem::path& path);

struct HeatmapOptions {
  // Colour scale. When both are NaN, the scale spans the scores, leaving out the diagonal of a
  // square matrix whose rows and columns have the same labels (self-similarity 1 would
  // otherwise squash the off-diagonal contrast that shows the category blocks; the diagonal
  // is then drawn at the top colour).
  float scale_min = std::numeric_limits<float>::quiet_NaN();
  float scale_max = std::numeric_limits<float>::quiet_NaN();
  // Width of the matrix area in pixels; cells are square and at least 4 px.
  int matrix_pixels = 900;
  // Draw each row and column label when cells are at least this tall; category labels are
  // always drawn.
  int min_cell_for_item_labels = 9;
};

// Draws the heatmap: title "<model>  -  <kind>", rows and columns grouped by category
// (grouped_by_category is applied, so the picture's order is the CSV's after grouping), white
// separators between categories, category names along the left and top edges, item labels when
// cells are big enough, and a viridis colour bar with its scale.
RgbImage render_heatmap(const SimilarityMatrix& matrix, const HeatmapOptions& options = {});
void write_heatmap_png(const SimilarityMatrix& matrix, const std::filesystem::path& path,
                       const HeatmapOptions& options = {});

// --- Montage: a query and its top-k results in one picture. ---

// One query term: an image, a text, or both (a combined query), with its weight.
struct MontageQueryTerm {
  RgbImage image;    // empty (width 0) for a text term
  std::string text;  // empty for an image term
  float weight = 1.0f;
};

struct MontageResult {
  RgbImage image;        // decoded by the caller; empty draws a grey "unreadable" tile
  std::string label;     // e.g. the file name
  std::string caption;   // may be empty
  std::string category;  // may be empty
  float score = 0.0f;
};

struct MontageOptions {
  std::string title;      // e.g. "blip2-pretrain  -  text -> image"; empty for none
  int thumbnail = 220;    // thumbnails fit in a square of this size, aspect kept
  int columns = 5;        // results per row
  int caption_lines = 3;  // wrapped caption lines under each thumbnail (then "...")
};

// The query terms in a panel on the left (images as thumbnails, texts in quotes, weights shown
// when there are several terms or a weight is not 1), the results on the right in rank order,
// each with "#rank  score" and its label, category and caption underneath.
RgbImage render_montage(const std::vector<MontageQueryTerm>& query,
                        const std::vector<MontageResult>& results,
                        const MontageOptions& options = {});
void write_montage_png(const std::vector<MontageQueryTerm>& query,
                       const std::vector<MontageResult>& results, const std::filesystem::path& path,
                       const MontageOptions& options = {});

// Writes an RGB image as PNG (Error kInput when it cannot be written).
void write_png(const RgbImage& image, const std::filesystem::path& path);

}  // namespace mmsearch
