// The heatmap figure of a similarity matrix: cells through viridis, category groups with
// their names as headers, item labels, a colour bar, and a title.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <opencv2/imgproc.hpp>

#include "mmsearch/error.h"
#include "mmsearch/render.h"
#include "render_internal.h"

namespace mmsearch {
namespace {

using namespace render_detail;

// Runs of equal categories: [begin, end) index pairs in order.
std::vector<std::pair<int, int>> category_blocks(const std::vector<std::string>& categories) {
  std::vector<std::pair<int, int>> blocks;
  for (int i = 0; i < static_cast<int>(categories.size()); ++i) {
    if (blocks.empty() || categories[i] != categories[blocks.back().first]) {
      blocks.push_back({i, i + 1});
    } else {
      blocks.back().second = i + 1;
    }
  }
  return blocks;
}

std::string category_header(const std::string& category) {
  return category.empty() ? "(none)" : category;
}

// The colour scale [lo, hi]: the options', or the scores' range (without the diagonal of a
// self-similarity matrix).
std::pair<float, float> colour_scale(const SimilarityMatrix& m, bool self_matrix,
                                     const HeatmapOptions& options) {
  const int n_rows = static_cast<int>(m.row_labels.size());
  const int n_cols = static_cast<int>(m.col_labels.size());
  float lo = options.scale_min, hi = options.scale_max;
  if (std::isnan(lo) || std::isnan(hi)) {
    float data_lo = std::numeric_limits<float>::infinity();
    float data_hi = -std::numeric_limits<float>::infinity();
    for (int r = 0; r < n_rows; ++r) {
      for (int c = 0; c < n_cols; ++c) {
        if (self_matrix && r == c && n_rows > 1) continue;
        const float v = m.scores[static_cast<std::size_t>(r) * n_cols + c];
        if (!std::isfinite(v)) continue;
        data_lo = std::min(data_lo, v);
        data_hi = std::max(data_hi, v);
      }
    }
    if (!std::isfinite(data_lo)) data_lo = data_hi = 0.0f;
    if (std::isnan(lo)) lo = data_lo;
    if (std::isnan(hi)) hi = data_hi;
  }
  if (!(hi > lo)) hi = lo + 1e-6f;
  return {lo, hi};
}

int widest_item_label(const SimilarityMatrix& m, int pixel_size) {
  int widest = 0;
  for (const auto& [labels, categories] :
       {std::pair{&m.row_labels, &m.row_categories}, std::pair{&m.col_labels, &m.col_categories}}) {
    for (std::size_t i = 0; i < labels->size(); ++i) {
      const std::string shown = label_within_category((*labels)[i], (*categories)[i]);
      widest = std::max(widest, text_width(shown, pixel_size));
    }
  }
  return widest;
}

int widest_category(const SimilarityMatrix& m, int pixel_size) {
  int widest = 0;
  for (const auto* categories : {&m.row_categories, &m.col_categories}) {
    for (const auto& [begin, end] : category_blocks(*categories)) {
      widest = std::max(widest, text_width(category_header((*categories)[begin]), pixel_size));
    }
  }
  return widest;
}

}  // namespace

std::string label_within_category(const std::string& label, const std::string& category) {
  if (category.empty() || label.size() <= category.size() + 1 ||
      label.compare(0, category.size(), category) != 0 || label[category.size()] != '/') {
    return label;
  }
  return label.substr(category.size() + 1);
}

RgbImage render_heatmap(const SimilarityMatrix& input, const HeatmapOptions& options) {
  const SimilarityMatrix m = grouped_by_category(input);
  const int n_rows = static_cast<int>(m.row_labels.size());
  const int n_cols = static_cast<int>(m.col_labels.size());
  if (n_rows == 0 || n_cols == 0) {
    throw Error(ErrorKind::kUsage, "similarity matrix is empty: nothing to draw");
  }
  const bool self_matrix = n_rows == n_cols && m.row_labels == m.col_labels;
  const auto [lo, hi] = colour_scale(m, self_matrix, options);

  // Geometry. Text sizes are em heights in pixels.
  const int cell = std::max(4, options.matrix_pixels / std::max(n_rows, n_cols));
  const int matrix_w = cell * n_cols, matrix_h = cell * n_rows;
  const bool item_labels = cell >= options.min_cell_for_item_labels;
  const int item_px = std::clamp(cell - 1, 10, 14);
  const int category_px = 15, title_px = 22, small_px = 13;
  // The margins take what the longest label and category name need, up to a limit past
  // which names are cut.
  const int item_band = item_labels ? std::clamp(widest_item_label(m, item_px) + 10, 40, 160) : 0;
  const int category_band = std::clamp(widest_category(m, category_px) + 16, 40, 170);
  const int title_band = 64;
  const int margin = 16;
  const int matrix_x = margin + category_band + item_band;
  const int matrix_y = title_band + category_band + item_band;
  const int bar_x = matrix_x + matrix_w + 28, bar_w = 22;
  const int width = bar_x + bar_w + 70 + margin;
  const int height = matrix_y + matrix_h + 36;

  cv::Mat canvas(height, width, CV_8UC3, kWhite);

  // Cells: one pixel per cell through the colour map, then scaled up without smoothing.
  cv::Mat levels(n_rows, n_cols, CV_8UC1);
  for (int r = 0; r < n_rows; ++r) {
    for (int c = 0; c < n_cols; ++c) {
      const float v = m.scores[static_cast<std::size_t>(r) * n_cols + c];
      const float t = std::isfinite(v) ? std::clamp((v - lo) / (hi - lo), 0.0f, 1.0f) : 0.0f;
      levels.at<std::uint8_t>(r, c) = static_cast<std::uint8_t>(std::lround(t * 255.0f));
    }
  }
  cv::Mat coloured, cells;
  cv::applyColorMap(levels, coloured, cv::COLORMAP_VIRIDIS);
  cv::resize(coloured, cells, cv::Size(matrix_w, matrix_h), 0, 0, cv::INTER_NEAREST);
  cells.copyTo(canvas(cv::Rect(matrix_x, matrix_y, matrix_w, matrix_h)));

  // Category groups: separators across the matrix, and headers (a bracket over the group's
  // extent and its name) in the margins.
  const auto row_blocks = category_blocks(m.row_categories);
  const auto col_blocks = category_blocks(m.col_categories);
  const int separator = std::max(1, cell / 6);
  for (std::size_t b = 1; b < row_blocks.size(); ++b) {
    const int y = matrix_y + row_blocks[b].first * cell;
    cv::rectangle(canvas, cv::Rect(matrix_x, y - separator / 2, matrix_w, separator), kWhite,
                  cv::FILLED);
  }
  for (std::size_t b = 1; b < col_blocks.size(); ++b) {
    const int x = matrix_x + col_blocks[b].first * cell;
    cv::rectangle(canvas, cv::Rect(x - separator / 2, matrix_y, separator, matrix_h), kWhite,
                  cv::FILLED);
  }
  const int bracket_x = matrix_x - item_band - 6;
  for (const auto& [begin, end] : row_blocks) {
    const int y0 = matrix_y + begin * cell + 1, y1 = matrix_y + end * cell - 2;
    cv::line(canvas, {bracket_x, y0}, {bracket_x, y1}, kInk, 2);
    const std::string name =
        fit_text(category_header(m.row_categories[begin]), category_px, category_band - 16);
    draw_text(canvas, name,
              {bracket_x - 8 - text_width(name, category_px), (y0 + y1) / 2 + category_px * 3 / 8},
              category_px, kInk);
  }
  const int bracket_y = matrix_y - item_band - 6;
  for (const auto& [begin, end] : col_blocks) {
    const int x0 = matrix_x + begin * cell + 1, x1 = matrix_x + end * cell - 2;
    cv::line(canvas, {x0, bracket_y}, {x1, bracket_y}, kInk, 2);
    const std::string name =
        fit_text(category_header(m.col_categories[begin]), category_px, category_band - 16);
    draw_vertical_text(canvas, name, (x0 + x1) / 2, bracket_y - 8, category_px, kInk);
  }

  // Item labels, without the category folder their group header already names.
  if (item_labels) {
    for (int r = 0; r < n_rows; ++r) {
      const std::string label = fit_text(
          label_within_category(m.row_labels[r], m.row_categories[r]), item_px, item_band - 10);
      draw_text(canvas, label,
                {matrix_x - 5 - text_width(label, item_px),
                 matrix_y + r * cell + cell / 2 + item_px * 3 / 8},
                item_px, kMutedInk);
    }
    for (int c = 0; c < n_cols; ++c) {
      const std::string label = fit_text(
          label_within_category(m.col_labels[c], m.col_categories[c]), item_px, item_band - 10);
      draw_vertical_text(canvas, label, matrix_x + c * cell + cell / 2, matrix_y - 5, item_px,
                         kMutedInk);
    }
  }

  // Colour bar with ticks.
  cv::Mat ramp(256, 1, CV_8UC1);
  for (int i = 0; i < 256; ++i) ramp.at<std::uint8_t>(i, 0) = static_cast<std::uint8_t>(255 - i);
  cv::Mat ramp_colour, bar;
  cv::applyColorMap(ramp, ramp_colour, cv::COLORMAP_VIRIDIS);
  cv::resize(ramp_colour, bar, cv::Size(bar_w, matrix_h), 0, 0, cv::INTER_LINEAR);
  bar.copyTo(canvas(cv::Rect(bar_x, matrix_y, bar_w, matrix_h)));
  cv::rectangle(canvas, cv::Rect(bar_x, matrix_y, bar_w, matrix_h), kInk, 1);
  constexpr int kTicks = 5;
  for (int t = 0; t < kTicks; ++t) {
    const float value = hi - (hi - lo) * t / (kTicks - 1);
    const int y = matrix_y + static_cast<int>(
                                 std::lround(static_cast<double>(matrix_h - 1) * t / (kTicks - 1)));
    cv::line(canvas, {bar_x + bar_w, y}, {bar_x + bar_w + 5, y}, kInk, 1);
    draw_text(canvas, format_score(value), {bar_x + bar_w + 8, y + small_px * 3 / 8}, small_px,
              kInk);
  }
  draw_text(canvas, "cosine", {bar_x - 4, matrix_y - 10}, small_px, kMutedInk);

  // Title and a line that says what the axes are.
  const std::string kind = to_string(m.kind);
  draw_text(canvas, fit_text(m.model + " \u2014 " + kind, title_px, width - 2 * margin),
            {margin, 30}, title_px, kInk);
  const std::string row_kind = kind.substr(0, kind.find('-'));
  const std::string col_kind = kind.substr(kind.find('-') + 1);
  char subtitle[256];
  std::snprintf(subtitle, sizeof subtitle,
                "rows: %d %s, columns: %d %s, grouped by category; colour scale %.3f \u2013 %.3f%s",
                n_rows, row_kind.c_str(), n_cols, col_kind.c_str(), lo, hi,
                self_matrix ? " (diagonal excluded)" : "");
  draw_text(canvas, fit_text(subtitle, small_px, width - 2 * margin), {margin, 52}, small_px,
            kMutedInk);
  return rgb_from_bgr(canvas);
}

void write_heatmap_png(const SimilarityMatrix& matrix, const std::filesystem::path& path,
                       const HeatmapOptions& options) {
  write_png(render_heatmap(matrix, options), path);
}

}  // namespace mmsearch
