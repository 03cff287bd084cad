// The montage figure: a query (its image and text terms, with weights) and its top-k results
// as captioned thumbnails.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <opencv2/imgproc.hpp>

#include "mmsearch/render.h"
#include "render_internal.h"

namespace mmsearch {
namespace {

using namespace render_detail;

// Text sizes (em heights in pixels) and the line pitch under the thumbnails.
constexpr int kSmallPx = 13, kTextPx = 15, kHeaderPx = 18, kTitlePx = 22;
constexpr int kLinePitch = 18;
constexpr int kQueryTextLines = 6;

// The image scaled to fit a size x size square (aspect kept), centred on a light background.
cv::Mat thumbnail(const RgbImage& image, int size) {
  cv::Mat tile(size, size, CV_8UC3, cv::Scalar(236, 236, 236));
  const cv::Mat bgr = bgr_from_rgb(image);
  if (bgr.empty()) {
    const std::string text = "unreadable";
    draw_text(tile, text, {(size - text_width(text, kTextPx)) / 2, size / 2}, kTextPx, kMutedInk);
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

std::vector<std::string> query_text_lines(const MontageQueryTerm& term, int thumb) {
  // ASCII quotes: CJK fonts draw typographic ones full-width, which looks like a stray space.
  return wrap_text("\"" + term.text + "\"", kTextPx, thumb - 14, kQueryTextLines);
}

}  // namespace

RgbImage render_montage(const std::vector<MontageQueryTerm>& query,
                        const std::vector<MontageResult>& results, const MontageOptions& options) {
  const int thumb = std::max(64, options.thumbnail);
  const int columns = std::max(1, std::min<int>(options.columns, std::max<int>(1, results.size())));
  const int rows = std::max(1, static_cast<int>((results.size() + columns - 1) / columns));
  const int pad = 16, gap = 14;
  const int caption_lines = std::max(0, options.caption_lines);
  const int title_h = options.title.empty() ? 0 : 40;
  const int header_h = 30;
  // Under each thumbnail: rank+score, label, category, caption lines.
  const int cell_h = thumb + 8 + kLinePitch * (3 + caption_lines) + 8;
  const int cell_w = thumb;

  const bool show_weights =
      query.size() > 1 || std::any_of(query.begin(), query.end(),
                                      [](const MontageQueryTerm& t) { return t.weight != 1.0f; });
  // Query panel: each term is a thumbnail and/or a wrapped text box.
  int query_h = 0;
  for (const MontageQueryTerm& term : query) {
    if (show_weights) query_h += kLinePitch + 2;
    if (term.image.width > 0) query_h += thumb + 8;
    if (!term.text.empty()) {
      query_h += kLinePitch * static_cast<int>(query_text_lines(term, thumb).size()) + 16;
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
    draw_text(canvas, fit_text(options.title, kTitlePx, width - 2 * pad), {pad, pad + 26}, kTitlePx,
              kInk);
  }
  draw_text(canvas, "Query", {panel_x, pad + title_h + 20}, kHeaderPx, kInk);
  char header[64];
  std::snprintf(header, sizeof header, "Top %zu result%s", results.size(),
                results.size() == 1 ? "" : "s");
  draw_text(canvas, results.empty() ? "No results" : header, {results_x, pad + title_h + 20},
            kHeaderPx, kInk);
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
      draw_text(canvas, format_weight(term.weight), {panel_x + 10, y + 13}, kSmallPx, colour);
      y += kLinePitch + 2;
    }
    if (term.image.width > 0) {
      thumbnail(term.image, thumb).copyTo(canvas(cv::Rect(panel_x + 10, y, thumb, thumb)));
      cv::rectangle(canvas, cv::Rect(panel_x + 10 - 1, y - 1, thumb + 2, thumb + 2), kInk, 1);
      y += thumb + 8;
    }
    if (!term.text.empty()) {
      // The box fits its wrapped lines, so a short query takes a short box.
      const auto lines = query_text_lines(term, thumb);
      const cv::Rect box(panel_x + 10, y, thumb, kLinePitch * static_cast<int>(lines.size()) + 8);
      cv::rectangle(canvas, box, kWhite, cv::FILLED);
      cv::rectangle(canvas, box, cv::Scalar(180, 180, 180), 1);
      for (std::size_t i = 0; i < lines.size(); ++i) {
        draw_text(canvas, lines[i],
                  {box.x + 7, box.y + 4 + kLinePitch * static_cast<int>(i) + kTextPx}, kTextPx,
                  kInk);
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
    int ty = top + thumb + 8 + kTextPx;
    draw_text(canvas, "#" + std::to_string(i + 1), {x, ty}, kTextPx, kInk);
    const std::string score = format_score(r.score);
    draw_text(canvas, score, {x + thumb - text_width(score, kTextPx), ty}, kTextPx,
              cv::Scalar(150, 90, 20));
    ty += kLinePitch;
    draw_text(canvas, fit_text(r.label, kSmallPx, thumb), {x, ty}, kSmallPx, kInk);
    ty += kLinePitch;
    if (!r.category.empty()) {
      draw_text(canvas, fit_text("[" + r.category + "]", kSmallPx, thumb), {x, ty}, kSmallPx,
                cv::Scalar(60, 120, 40));
    }
    ty += kLinePitch;
    for (const std::string& line : wrap_text(r.caption, kSmallPx, thumb, caption_lines)) {
      draw_text(canvas, line, {x, ty}, kSmallPx, kMutedInk);
      ty += kLinePitch;
    }
  }
  return rgb_from_bgr(canvas);
}

void write_montage_png(const std::vector<MontageQueryTerm>& query,
                       const std::vector<MontageResult>& results, const std::filesystem::path& path,
                       const MontageOptions& options) {
  write_png(render_montage(query, results, options), path);
}

}  // namespace mmsearch
