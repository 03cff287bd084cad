// The study's figures: similarity heatmaps and query montages, their text, and PNG output.
//
// Usage:
//   mmsearch::write_heatmap_png(matrix, "out.png");           // matrix from simmatrix.h
//   mmsearch::write_montage_png(query_terms, results, "m.png");
//
// Text is drawn with FreeType (OpenCV's freetype module) in a font fontconfig finds for the
// text's characters, preferring Noto Sans CJK (Latin, Greek, Cyrillic, Chinese, Japanese,
// Korean). The environment variable MMSEARCH_FONT, a font file path, overrides the choice.
// When no font can be found or loaded, drawing throws Error(kInput) saying what to install
// (apt-get install fonts-noto-cjk) rather than drawing unreadable placeholders: a figure
// whose labels are wrong is worse than none. Characters no installed font has are drawn as
// the font's missing-glyph box, with one warning on the log. Labels that do not fit are cut
// between grapheme clusters (never inside a character) and end with "…".
//
// Writers throw Error(kInput) when the file cannot be written and Error(kUsage) for an empty
// image or inconsistent matrix sizes. Nothing here prints.
#pragma once

#include <filesystem>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "mmsearch/image.h"
#include "mmsearch/simmatrix.h"

namespace mmsearch {

// --- Heatmap of a similarity matrix. ---

struct HeatmapOptions {
  // Colour scale. When both are NaN, the scale spans the scores, leaving out the diagonal of a
  // square matrix whose rows and columns have the same labels (self-similarity 1 would
  // otherwise squash the off-diagonal contrast that shows the category blocks; the diagonal
  // is then drawn at the top colour).
  float scale_min = std::numeric_limits<float>::quiet_NaN();
  float scale_max = std::numeric_limits<float>::quiet_NaN();
  // Width of the matrix area in pixels; cells are square and at least 4 px.
  int matrix_pixels = 900;
  // Draw each row and column label when cells are at least this tall (below it, labels would
  // overlap); category names are always drawn.
  int min_cell_for_item_labels = 10;
};

// Draws the heatmap: title "<model> — <kind>", rows and columns grouped by category
// (grouped_by_category is applied, so the picture's order is the CSV's after grouping), white
// separators between categories, category names as group headers along the left and top
// edges, item labels (without their category's folder, see label_within_category) when cells
// are big enough, and a viridis colour bar with its scale.
RgbImage render_heatmap(const SimilarityMatrix& matrix, const HeatmapOptions& options = {});
void write_heatmap_png(const SimilarityMatrix& matrix, const std::filesystem::path& path,
                       const HeatmapOptions& options = {});

// An item's label as shown under its category's header: "dessert/dish-001.jpg" in category
// "dessert" becomes "dish-001.jpg"; a label that does not start with "<category>/" (a category
// from a captions file, or none) is kept whole.
std::string label_within_category(const std::string& label, const std::string& category);

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
  int caption_lines = 3;  // wrapped caption lines under each thumbnail (then "…")
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

// --- Text, as the figures draw it. Sizes are the font's em height in pixels. ---

// The font file (and face index in a collection) that draws `text`: MMSEARCH_FONT when set,
// else fontconfig's best match for the text's characters, preferring Noto Sans CJK. Throws
// Error(kInput) when there is none.
struct FontFace {
  std::filesystem::path file;
  int index = 0;
  std::u32string missing;  // the text's characters that have no glyph in it (drawn as boxes)
};
FontFace font_for_text(std::string_view text);

// Width in pixels of `text` drawn on one line.
int text_width(std::string_view text, int pixel_size);

// `text` on one line, cut to at most max_width pixels: when it is wider, the longest prefix
// that ends on a grapheme cluster boundary and fits with "…" appended. Control characters
// become spaces and ill-formed UTF-8 becomes U+FFFD, so the result is always valid UTF-8.
std::string fit_text(std::string_view text, int pixel_size, int max_width);

// Dark text on white, on one line, in a picture just big enough (for checks and previews).
RgbImage render_text_line(std::string_view text, int pixel_size);

// --- PNG. ---

// Writes an RGB image as PNG (Error kInput when it cannot be written, kUsage when empty).
void write_png(const RgbImage& image, const std::filesystem::path& path);

}  // namespace mmsearch
