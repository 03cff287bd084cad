#include "mmsearch/simmatrix.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "mmsearch/error.h"

namespace mmsearch {
namespace {

// ---------------------------------------------------------------------------------------------
// Text helpers (Hershey fonts are ASCII only)

constexpr int kFont = cv::FONT_HERSHEY_SIMPLEX;
const cv::Scalar kInk(40, 40, 40);  // BGR, near black
const cv::Scalar kMutedInk(110, 110, 110);
const cv::Scalar kWhite(255, 255, 255);

// UTF-8 to ASCII: Latin-1 accented letters lose the accent (tiramisù -> tiramisu), typographic
// quotes and dashes become their ASCII forms, anything else becomes '?'.
std::string to_ascii(std::string_view text) {
  static const char* kLatin1 =  // U+00C0 .. U+00FF
      "AAAAAAACEEEEIIII"
      "DNOOOOOxOUUUUYTs"
      "aaaaaaaceeeeiiii"
      "dnooooo/ouuuuyty";
  std::string out;
  for (std::size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      out += (c < 0x20) ? ' ' : static_cast<char>(c);
      ++i;
      continue;
    }
    int length = (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 1;
    if (i + length > text.size()) length = 1;
    std::uint32_t cp = 0;
    if (length == 2) {
      cp = ((c & 0x1F) << 6) | (static_cast<unsigned char>(text[i + 1]) & 0x3F);
    } else if (length == 3) {
      cp = ((c & 0x0F) << 12) | ((static_cast<unsigned char>(text[i + 1]) & 0x3F) << 6) |
           (static_cast<unsigned char>(text[i + 2]) & 0x3F);
    }
    if (cp >= 0xC0 && cp <= 0xFF) {
      out += kLatin1[cp - 0xC0];
    } else if (cp == 0x2018 || cp == 0x2019) {
      out += '\'';
    } else if (cp == 0x201C || cp == 0x201D) {
      out += '"';
    } else if (cp == 0x2013 || cp == 0x2014) {
      out += '-';
    } else if (cp == 0xA0) {
      out += ' ';
    } else {
      out += '?';
    }
    i += length;
  }
  return out;
}

int text_width(const std::string& text, double scale, int thickness = 1) {
  int baseline = 0;
  return cv::getTextSize(text, kFont, scale, thickness, &baseline).width;
}

// Shortens with "..." until it fits in max_width pixels.
std::string fit_text(const std::string& text, double scale, int max_width, int thickness = 1) {
  if (text_width(text, scale, thickness) <= max_width) return text;
  std::string cut = text;
  while (!cut.empty() && text_width(cut + "...", scale, thickness) > max_width) cut.pop_back();
  return cut + "...";
}

// Greedy word wrap into at most max_lines lines; the last line ends with "..." if text is left.
std::vector<std::string> wrap_text(const std::string& text, double scale, int max_width,
                                   int max_lines) {
  std::vector<std::string> words;
  std::string word;
  for (char c : text) {
    if (c == ' ') {
      if (!word.empty()) words.push_back(word);
      word.clear();
    } else {
      word += c;
    }
  }
  if (!word.empty()) words.push_back(word);
  std::vector<std::string> lines;
  std::string line;
  std::size_t w = 0;
  for (; w < words.size(); ++w) {
    const std::string candidate = line.empty() ? words[w] : line + " " + words[w];
    if (text_width(candidate, scale) <= max_width || line.empty()) {
      line = candidate;
      continue;
    }
    lines.push_back(line);
    line = words[w];
    if (static_cast<int>(lines.size()) == max_lines) break;
  }
  if (static_cast<int>(lines.size()) < max_lines && !line.empty()) {
    lines.push_back(line);
    line.clear();
    w = words.size();
  }
  const bool truncated = w < words.size();
  for (std::string& l : lines) l = fit_text(l, scale, max_width);
  if (truncated && !lines.empty()) lines.back() = fit_text(lines.back() + " ...", scale, max_width);
  return lines;
}

void put_text(cv::Mat& canvas, const std::string& text, cv::Point origin, double scale,
              const cv::Scalar& colour, int thickness = 1) {
  cv::putText(canvas, text, origin, kFont, scale, colour, thickness, cv::LINE_AA);
}

// Draws text rotated 90 degrees counter-clockwise (reading bottom to top) with its start at
// (x_centre, y_bottom): the left end of the text sits at y_bottom, centred on x_centre.
void put_vertical_text(cv::Mat& canvas, const std::string& text, int x_centre, int y_bottom,
                       double scale, const cv::Scalar& colour, int thickness = 1) {
  int baseline = 0;
  const cv::Size size = cv::getTextSize(text, kFont, scale, thickness, &baseline);
  const int h = size.height + baseline + 2;
  cv::Mat strip(h, size.width + 2, CV_8UC3, cv::Scalar(255, 255, 255));
  cv::putText(strip, text, cv::Point(1, size.height + 1), kFont, scale, colour, thickness,
              cv::LINE_AA);
  cv::Mat rotated;
  cv::rotate(strip, rotated, cv::ROTATE_90_COUNTERCLOCKWISE);
  cv::Rect target(x_centre - rotated.cols / 2, y_bottom - rotated.rows, rotated.cols, rotated.rows);
  target &= cv::Rect(0, 0, canvas.cols, canvas.rows);
  if (target.area() == 0) return;
  cv::Mat src =
      rotated(cv::Rect(target.x - (x_centre - rotated.cols / 2),
                       target.y - (y_bottom - rotated.rows), target.width, target.height));
  // Darken-only blend keeps whatever is already under the label visible.
  cv::Mat dst = canvas(target);
  cv::min(dst, src, dst);
}

cv::Mat to_mat(const RgbImage& image) {
  if (image.width <= 0 || image.height <= 0 ||
      image.pixels.size() != static_cast<std::size_t>(image.width) * image.height * 3) {
    return cv::Mat();
  }
  cv::Mat rgb(image.height, image.width, CV_8UC3, const_cast<std::uint8_t*>(image.pixels.data()));
  cv::Mat bgr;
  cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
  return bgr;
}

RgbImage from_mat(const cv::Mat& bgr) {
  RgbImage image;
  image.width = bgr.cols;
  image.height = bgr.rows;
  cv::Mat rgb;
  cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
  image.pixels.assign(rgb.data, rgb.data + rgb.total() * 3);
  return image;
}

void check_sizes(const SimilarityMatrix& m) {
  if (m.row_categories.size() != m.row_labels.size() ||
      m.col_categories.size() != m.col_labels.size() ||
      m.scores.size() != m.row_labels.size() * m.col_labels.size()) {
    throw Error(ErrorKind::kUsage,
                "similarity matrix: " + std::to_string(m.row_labels.size()) + " row labels, " +
                    std::to_string(m.row_categories.size()) + " row categories, " +
                    std::to_string(m.col_labels.size()) + " column labels, " +
                    std::to_string(m.col_categories.size()) + " column categories and " +
                    std::to_string(m.scores.size()) + " scores do not agree");
  }
}

std::vector<std::size_t> stable_order(const std::vector<std::string>& categories) {
  std::vector<std::size_t> order(categories.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return categories[a] < categories[b]; });
  return order;
}

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

std::string format_score(float value) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.3f", value);
  return buffer;
}

void write_file_png(const cv::Mat& bgr, const std::filesystem::path& path) {
  bool ok = false;
  try {
    ok = cv::imwrite(path.string(), bgr);
  } catch (const cv::Exception& e) {
    throw Error(ErrorKind::kInput, path.string() + ": cannot write PNG: " + e.what());
  }
  if (!ok) throw Error(ErrorKind::kInput, path.string() + ": cannot write PNG");
}

}  // namespace

// ---------------------------------------------------------------------------------------------

SimilarityMatrix grouped_by_category(const SimilarityMatrix& matrix) {
  check_sizes(matrix);
  const auto rows = stable_order(matrix.row_categories);
  const auto cols = stable_order(matrix.col_categories);
  SimilarityMatrix out;
  out.model = matrix.model;
  out.kind = matrix.kind;
  const std::size_t m = matrix.col_labels.size();
  out.scores.resize(matrix.scores.size());
  for (std::size_t r = 0; r < rows.size(); ++r) {
    out.row_labels.push_back(matrix.row_labels[rows[r]]);
    out.row_categories.push_back(matrix.row_categories[rows[r]]);
    for (std::size_t c = 0; c < m; ++c)
      out.scores[r * m + c] = matrix.scores[rows[r] * m + cols[c]];
  }
  for (std::size_t c = 0; c < m; ++c) {
    out.col_labels.push_back(matrix.col_labels[cols[c]]);
    out.col_categories.push_back(matrix.col_categories[cols[c]]);
  }
  return out;
}

void write_similarity_csv(const SimilarityMatrix& matrix, const std::filesystem::path& path) {
  check_sizes(matrix);
  const auto quote = [](const std::string& field) {
    if (field.find_first_of(",\"\r\n") == std::string::npos) return field;
    std::string quoted = "\"";
    for (char c : field) {
      if (c == '"') quoted += '"';
      quoted += c;
    }
    return quoted + "\"";
  };
  std::ofstream out(path, std::ios::binary);
  if (!out) throw Error(ErrorKind::kInput, path.string() + ": cannot write CSV");
  out << "label";
  for (const std::string& label : matrix.col_labels) out << ',' << quote(label);
  out << "\r\n";
  const std::size_t m = matrix.col_labels.size();
  char number[32];
  for (std::size_t r = 0; r < matrix.row_labels.size(); ++r) {
    out << quote(matrix.row_labels[r]);
    for (std::size_t c = 0; c < m; ++c) {
      std::snprintf(number, sizeof number, "%.6f", matrix.scores[r * m + c]);
      out << ',' << number;
    }
    out << "\r\n";
  }
  out.flush();
  if (!out) throw Error(ErrorKind::kInput, path.string() + ": write failed");
}

RgbImage render_heatmap(const SimilarityMatrix& input, const HeatmapOptions& options) {
  const SimilarityMatrix m = grouped_by_category(input);
  const int n_rows = static_cast<int>(m.row_labels.size());
  const int n_cols = static_cast<int>(m.col_labels.size());
  if (n_rows == 0 || n_cols == 0) {
    throw Error(ErrorKind::kUsage, "similarity matrix is empty: nothing to draw");
  }

  // Colour scale.
  const bool self_matrix = n_rows == n_cols && m.row_labels == m.col_labels;
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

  // Geometry.
  const int cell = std::max(4, options.matrix_pixels / std::max(n_rows, n_cols));
  const int matrix_w = cell * n_cols, matrix_h = cell * n_rows;
  const bool item_labels = cell >= options.min_cell_for_item_labels;
  const double item_scale = std::clamp(cell / 30.0, 0.28, 0.42);
  const double category_scale = 0.5;
  const int item_band = item_labels ? 150 : 0;
  const int category_band = 160;
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

  // Category blocks: separators across the matrix, names in the margins, brackets that show
  // each block's extent.
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
        fit_text(to_ascii(m.row_categories[begin].empty() ? "(none)" : m.row_categories[begin]),
                 category_scale, category_band - 16, 1);
    const int w = text_width(name, category_scale);
    put_text(canvas, name, {bracket_x - 8 - w, (y0 + y1) / 2 + 5}, category_scale, kInk, 1);
  }
  const int bracket_y = matrix_y - item_band - 6;
  for (const auto& [begin, end] : col_blocks) {
    const int x0 = matrix_x + begin * cell + 1, x1 = matrix_x + end * cell - 2;
    cv::line(canvas, {x0, bracket_y}, {x1, bracket_y}, kInk, 2);
    const std::string name =
        fit_text(to_ascii(m.col_categories[begin].empty() ? "(none)" : m.col_categories[begin]),
                 category_scale, category_band - 16, 1);
    put_vertical_text(canvas, name, (x0 + x1) / 2, bracket_y - 8, category_scale, kInk, 1);
  }

  if (item_labels) {
    for (int r = 0; r < n_rows; ++r) {
      const std::string label = fit_text(to_ascii(m.row_labels[r]), item_scale, item_band - 10);
      const int w = text_width(label, item_scale);
      put_text(canvas, label, {matrix_x - 5 - w, matrix_y + r * cell + cell / 2 + 4}, item_scale,
               kMutedInk);
    }
    for (int c = 0; c < n_cols; ++c) {
      const std::string label = fit_text(to_ascii(m.col_labels[c]), item_scale, item_band - 10);
      put_vertical_text(canvas, label, matrix_x + c * cell + cell / 2, matrix_y - 5, item_scale,
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
    put_text(canvas, format_score(value), {bar_x + bar_w + 8, y + 5}, 0.42, kInk);
  }
  put_text(canvas, "cosine", {bar_x - 4, matrix_y - 10}, 0.42, kMutedInk);

  // Title and a line that says what the axes are.
  const std::string kind = to_string(m.kind);
  const std::string title =
      fit_text(to_ascii(m.model) + "  -  " + kind, 0.8, width - 2 * margin, 2);
  put_text(canvas, title, {margin, 30}, 0.8, kInk, 2);
  const std::string row_kind = kind.substr(0, kind.find('-'));
  const std::string col_kind = kind.substr(kind.find('-') + 1);
  char subtitle[256];
  std::snprintf(subtitle, sizeof subtitle,
                "rows: %d %s, columns: %d %s, grouped by category; colour scale %.3f .. %.3f%s",
                n_rows, row_kind.c_str(), n_cols, col_kind.c_str(), lo, hi,
                self_matrix ? " (diagonal excluded)" : "");
  put_text(canvas, fit_text(subtitle, 0.45, width - 2 * margin), {margin, 52}, 0.45, kMutedInk);
  return from_mat(canvas);
}

void write_heatmap_png(const SimilarityMatrix& matrix, const std::filesystem::path& path,
                       const HeatmapOptions& options) {
  write_png(render_heatmap(matrix, options), path);
}

void write_png(const RgbImage& image, const std::filesystem::path& path) {
  const cv::Mat bgr = to_mat(image);
  if (bgr.empty())
    throw Error(ErrorKind::kUsage, path.string() + ": empty image, nothing to write");
  write_file_png(bgr, path);
}

// ---------------------------------------------------------------------------------------------
// Montage

namespace {

// The image scaled to fit a size x size square (aspect kept), centred on a light background.
cv::Mat thumbnail(const RgbImage& image, int size) {
  cv::Mat tile(size, size, CV_8UC3, cv::Scalar(236, 236, 236));
  const cv::Mat bgr = to_mat(image);
  if (bgr.empty()) {
    const std::string text = "unreadable";
    put_text(tile, text, {(size - text_width(text, 0.5)) / 2, size / 2}, 0.5, kMutedInk);
    return tile;
  }
  const double scale =
      std::min(static_cast<double>(size) / bgr.cols, static_cast<double>(size) / bgr.rows);
  const int w = std::max(1, static_cast<int>(std::lround(bgr.cols * scale)));
  const int h = std::max(1, static_cast<int>(std::lround(bgr.rows * scale)));
  cv::Mat resized;
  cv::resize(bgr, resized, cv::Size(w, h), 0, 0, scale < 1.0 ? cv::INTER_AREA : cv::INTER_CUBIC);
  resized.copyTo(tile(cv::Rect((size - w) / 2, (size - h) / 2, w, h)));
  return tile;
}

std::string format_weight(float weight) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "weight %+.2g", weight);
  return buffer;
}

}  // namespace

RgbImage render_montage(const std::vector<MontageQueryTerm>& query,
                        const std::vector<MontageResult>& results, const MontageOptions& options) {
  const int thumb = std::max(64, options.thumbnail);
  const int columns = std::max(1, std::min<int>(options.columns, std::max<int>(1, results.size())));
  const int rows = std::max(1, static_cast<int>((results.size() + columns - 1) / columns));
  const int pad = 16, gap = 14;
  const int line_h = 17;
  const double text_scale = 0.42;
  const int caption_lines = std::max(0, options.caption_lines);
  const int title_h = options.title.empty() ? 0 : 40;
  const int header_h = 30;
  // Under each thumbnail: rank+score, label, category, caption lines.
  const int cell_h = thumb + 8 + line_h * (3 + caption_lines) + 8;
  const int cell_w = thumb;

  const bool show_weights =
      query.size() > 1 || std::any_of(query.begin(), query.end(),
                                      [](const MontageQueryTerm& t) { return t.weight != 1.0f; });
  // Query panel: each term is a thumbnail and/or a wrapped text box.
  const int text_box_lines = 6;
  int query_h = 0;
  for (const MontageQueryTerm& term : query) {
    if (show_weights) query_h += line_h + 2;
    if (term.image.width > 0) query_h += thumb + 8;
    if (!term.text.empty()) {
      const auto lines =
          wrap_text("\"" + to_ascii(term.text) + "\"", 0.5, thumb - 14, text_box_lines);
      query_h += line_h * static_cast<int>(lines.size()) + 16;
    }
    query_h += gap;
  }
  const int panel_x = pad, panel_w = thumb + 2 * 10;
  const int results_x = panel_x + panel_w + 2 * pad + 2;
  const int width = results_x + columns * cell_w + (columns - 1) * gap + pad;
  const int body_y = pad + title_h + header_h;
  const int height = body_y + std::max(query_h, rows * cell_h + (rows - 1) * gap) + pad;

  cv::Mat canvas(height, width, CV_8UC3, kWhite);
  if (!options.title.empty()) {
    put_text(canvas, fit_text(to_ascii(options.title), 0.75, width - 2 * pad, 2), {pad, pad + 26},
             0.75, kInk, 2);
  }
  put_text(canvas, "Query", {panel_x, pad + title_h + 20}, 0.6, kInk, 2);
  char header[64];
  std::snprintf(header, sizeof header, "Top %zu result%s", results.size(),
                results.size() == 1 ? "" : "s");
  put_text(canvas, results.empty() ? "No results" : header, {results_x, pad + title_h + 20}, 0.6,
           kInk, 2);
  // A rule between the query panel and the results.
  const int rule_x = panel_x + panel_w + pad;
  cv::line(canvas, {rule_x, body_y - 26}, {rule_x, height - pad}, cv::Scalar(210, 210, 210), 2);

  // Query terms on a tinted panel.
  const cv::Scalar panel_tint(246, 238, 228);  // light blue-grey (BGR)
  cv::rectangle(canvas, cv::Rect(panel_x, body_y, panel_w, std::max(query_h, 1)), panel_tint,
                cv::FILLED);
  int y = body_y + 10;
  for (const MontageQueryTerm& term : query) {
    if (show_weights) {
      const cv::Scalar colour = term.weight < 0 ? cv::Scalar(40, 40, 190) : kInk;
      put_text(canvas, format_weight(term.weight), {panel_x + 10, y + 12}, text_scale, colour, 1);
      y += line_h + 2;
    }
    if (term.image.width > 0) {
      thumbnail(term.image, thumb).copyTo(canvas(cv::Rect(panel_x + 10, y, thumb, thumb)));
      cv::rectangle(canvas, cv::Rect(panel_x + 10 - 1, y - 1, thumb + 2, thumb + 2), kInk, 1);
      y += thumb + 8;
    }
    if (!term.text.empty()) {
      // The box fits its wrapped lines, so a short query takes a short box.
      const auto lines =
          wrap_text("\"" + to_ascii(term.text) + "\"", 0.5, thumb - 14, text_box_lines);
      const cv::Rect box(panel_x + 10, y, thumb, line_h * static_cast<int>(lines.size()) + 8);
      cv::rectangle(canvas, box, kWhite, cv::FILLED);
      cv::rectangle(canvas, box, cv::Scalar(180, 180, 180), 1);
      for (std::size_t i = 0; i < lines.size(); ++i) {
        put_text(canvas, lines[i], {box.x + 7, box.y + 6 + line_h * static_cast<int>(i + 1) - 3},
                 0.5, kInk, 1);
      }
      y += box.height + 8;
    }
    y += gap - 8;
  }

  // Results, in rank order, left to right then top to bottom.
  for (std::size_t i = 0; i < results.size(); ++i) {
    const MontageResult& r = results[i];
    const int col = static_cast<int>(i) % columns, row = static_cast<int>(i) / columns;
    const int x = results_x + col * (cell_w + gap);
    const int top = body_y + row * (cell_h + gap);
    thumbnail(r.image, thumb).copyTo(canvas(cv::Rect(x, top, thumb, thumb)));
    cv::rectangle(canvas, cv::Rect(x - 1, top - 1, thumb + 2, thumb + 2), cv::Scalar(200, 200, 200),
                  1);
    int ty = top + thumb + 8 + line_h - 4;
    char rank[64];
    std::snprintf(rank, sizeof rank, "#%zu", i + 1);
    put_text(canvas, rank, {x, ty}, 0.55, kInk, 1);
    const std::string score = format_score(r.score);
    put_text(canvas, score, {x + thumb - text_width(score, 0.5, 1), ty}, 0.5,
             cv::Scalar(150, 90, 20), 1);
    ty += line_h;
    put_text(canvas, fit_text(to_ascii(r.label), text_scale, thumb), {x, ty}, text_scale, kInk);
    ty += line_h;
    if (!r.category.empty()) {
      put_text(canvas, fit_text("[" + to_ascii(r.category) + "]", text_scale, thumb), {x, ty},
               text_scale, cv::Scalar(60, 120, 40));
    }
    ty += line_h;
    for (const std::string& line :
         wrap_text(to_ascii(r.caption), text_scale, thumb, caption_lines)) {
      put_text(canvas, line, {x, ty}, text_scale, kMutedInk);
      ty += line_h;
    }
  }
  return from_mat(canvas);
}

void write_montage_png(const std::vector<MontageQueryTerm>& query,
                       const std::vector<MontageResult>& results, const std::filesystem::path& path,
                       const MontageOptions& options) {
  write_png(render_montage(query, results, options), path);
}

}  // namespace mmsearch
