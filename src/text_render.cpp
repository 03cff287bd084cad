// Text for the figures: FreeType drawing (OpenCV's freetype module, HarfBuzz shaping) in the
// font font_for_text() picks, measured with the real glyph widths, cut and wrapped on Unicode
// boundaries (ICU) so that no character is ever split.
#include <spdlog/spdlog.h>
#include <unicode/brkiter.h>
#include <unicode/utext.h>
#include <unicode/utf8.h>

#include <cmath>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <opencv2/freetype.hpp>
#include <opencv2/imgproc.hpp>
#include <unordered_map>

#include "mmsearch/error.h"
#include "mmsearch/render.h"
#include "render_internal.h"

namespace mmsearch {
namespace {

using cv::freetype::FreeType2;

constexpr std::string_view kEllipsis = "\u2026";

// FreeType2 objects and ICU break iterators are not thread-safe: one lock guards all text work.
std::mutex text_mutex;

struct Faces {
  std::map<std::pair<std::string, int>, cv::Ptr<FreeType2>> loaded;
  // The face each text was drawn with, so that a label is matched once, not once per measure.
  std::unordered_map<std::string, FreeType2*> by_text;
  bool warned_missing = false;
};

Faces& faces() {
  static Faces instance;
  return instance;
}

std::string describe(const std::u32string& chars) {
  std::string out;
  for (std::size_t i = 0; i < chars.size() && i < 8; ++i) {
    char code[16];
    std::snprintf(code, sizeof code, "%sU+%04X", i == 0 ? "" : " ",
                  static_cast<unsigned>(chars[i]));
    out += code;
  }
  return chars.size() > 8 ? out + " ..." : out;
}

// The caller holds text_mutex.
FreeType2& face_for(const std::string& text) {
  Faces& cache = faces();
  const char* override_file = std::getenv("MMSEARCH_FONT");
  const std::string key = (override_file ? override_file : "") + std::string(1, '\0') + text;
  if (const auto it = cache.by_text.find(key); it != cache.by_text.end()) return *it->second;

  const FontFace font = font_for_text(text);
  if (!font.missing.empty() && !cache.warned_missing) {
    cache.warned_missing = true;
    spdlog::warn(
        "no installed font has every character of \"{}\": {} (the closest) has none for {}, "
        "drawn as boxes; a font that has them (e.g. from the fonts-noto package) fixes that",
        text, font.file.string(), describe(font.missing));
  }
  cv::Ptr<FreeType2>& face = cache.loaded[{font.file.string(), font.index}];
  if (!face) {
    try {
      face = cv::freetype::createFreeType2();
      face->loadFontData(font.file.string(), font.index);
    } catch (const cv::Exception& e) {
      cache.loaded.erase({font.file.string(), font.index});
      throw Error(ErrorKind::kInput, font.file.string() + ": cannot load this font (" + e.err +
                                         "); install fonts-noto-cjk or set MMSEARCH_FONT to "
                                         "another font file");
    }
  }
  if (cache.by_text.size() > 4096) cache.by_text.clear();  // bounds memory over long runs
  cache.by_text.emplace(key, face.get());
  return *face;
}

// Controls become spaces, ill-formed UTF-8 becomes U+FFFD: what gets drawn is valid text.
std::string printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::int32_t i = 0; i < static_cast<std::int32_t>(text.size());) {
    UChar32 c = 0;
    U8_NEXT(text.data(), i, static_cast<std::int32_t>(text.size()), c);
    if (c < 0) c = 0xFFFD;
    if (c < 0x20 || (c >= 0x7F && c < 0xA0)) c = ' ';
    char bytes[U8_MAX_LENGTH];
    std::int32_t n = 0;
    U8_APPEND_UNSAFE(bytes, n, c);
    out.append(bytes, n);
  }
  return out;
}

std::string trim_right(std::string text) {
  while (!text.empty() && text.back() == ' ') text.pop_back();
  return text;
}

// Byte offsets where `iterator` allows a cut in valid UTF-8 `text`, from 0 to text.size().
// The caller holds text_mutex.
std::vector<std::size_t> boundaries(icu::BreakIterator& iterator, const std::string& text) {
  UErrorCode status = U_ZERO_ERROR;
  UText* utext = utext_openUTF8(nullptr, text.data(), static_cast<int64_t>(text.size()), &status);
  iterator.setText(utext, status);
  std::vector<std::size_t> cuts;
  if (U_SUCCESS(status)) {
    for (std::int32_t b = iterator.first(); b != icu::BreakIterator::DONE; b = iterator.next()) {
      cuts.push_back(static_cast<std::size_t>(b));
    }
  }
  utext_close(utext);
  if (U_FAILURE(status)) {
    throw Error(ErrorKind::kInternal, std::string("ICU break iterator: ") + u_errorName(status));
  }
  return cuts;
}

icu::BreakIterator& break_iterator(bool lines) {
  static std::unique_ptr<icu::BreakIterator> characters, line_breaks;
  std::unique_ptr<icu::BreakIterator>& slot = lines ? line_breaks : characters;
  if (!slot) {
    UErrorCode status = U_ZERO_ERROR;
    slot.reset(lines ? icu::BreakIterator::createLineInstance(icu::Locale::getRoot(), status)
                     : icu::BreakIterator::createCharacterInstance(icu::Locale::getRoot(), status));
    if (U_FAILURE(status) || !slot) {
      slot.reset();
      throw Error(ErrorKind::kInternal, std::string("ICU break iterator: ") + u_errorName(status));
    }
  }
  return *slot;
}

// The caller holds text_mutex.
int measure(FreeType2& face, const std::string& text, int pixel_size) {
  if (text.empty()) return 0;
  int baseline = 0;
  return face.getTextSize(text, pixel_size, -1, &baseline).width;
}

// fit_text on printable text; the caller holds text_mutex.
std::string fit_locked(const std::string& text, int pixel_size, int max_width) {
  FreeType2& face = face_for(text + std::string(kEllipsis));
  if (measure(face, text, pixel_size) <= max_width) return text;
  const std::vector<std::size_t> cuts = boundaries(break_iterator(false), text);
  // The longest prefix that fits with the ellipsis: widths grow with the prefix.
  std::size_t lo = 0, hi = cuts.size() - 1;  // cuts[lo] fits (the empty prefix is assumed to)
  while (lo < hi) {
    const std::size_t mid = (lo + hi + 1) / 2;
    const std::string candidate = trim_right(text.substr(0, cuts[mid])) + std::string(kEllipsis);
    if (measure(face, candidate, pixel_size) <= max_width) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  const std::string cut = trim_right(text.substr(0, cuts[lo])) + std::string(kEllipsis);
  return measure(face, cut, pixel_size) <= max_width ? cut : std::string();
}

}  // namespace

int text_width(std::string_view text, int pixel_size) {
  const std::string clean = printable(text);
  const std::lock_guard<std::mutex> lock(text_mutex);
  return measure(face_for(clean), clean, pixel_size);
}

std::string fit_text(std::string_view text, int pixel_size, int max_width) {
  const std::string clean = printable(text);
  const std::lock_guard<std::mutex> lock(text_mutex);
  return fit_locked(clean, pixel_size, max_width);
}

RgbImage render_text_line(std::string_view text, int pixel_size) {
  using namespace render_detail;
  const int pad = std::max(2, pixel_size / 4);
  cv::Mat canvas(line_height(pixel_size) + 2 * pad, text_width(text, pixel_size) + 2 * pad, CV_8UC3,
                 kWhite);
  draw_text(canvas, text, {pad, pad + baseline_offset(pixel_size)}, pixel_size, kInk);
  return rgb_from_bgr(canvas);
}

namespace render_detail {

// Noto Sans CJK's ascender and descender are 0.88 and 0.12 em; accents and descenders of
// other fonts reach a little further.
int line_height(int pixel_size) { return static_cast<int>(std::lround(pixel_size * 1.3)); }
int baseline_offset(int pixel_size) { return static_cast<int>(std::lround(pixel_size * 1.02)); }

void draw_text(cv::Mat& canvas, std::string_view text, cv::Point origin, int pixel_size,
               const cv::Scalar& colour) {
  const std::string clean = printable(text);
  if (clean.empty()) return;
  const std::lock_guard<std::mutex> lock(text_mutex);
  // Thickness -1 fills the glyphs, anti-aliased; bottomLeftOrigin = true puts `origin` on
  // the baseline.
  face_for(clean).putText(canvas, clean, origin, pixel_size, colour, -1, cv::LINE_AA, true);
}

void draw_vertical_text(cv::Mat& canvas, std::string_view text, int x_centre, int y_bottom,
                        int pixel_size, const cv::Scalar& colour) {
  const int width = text_width(text, pixel_size);
  if (width <= 0) return;
  cv::Mat strip(line_height(pixel_size), width + 4, CV_8UC3, kWhite);
  draw_text(strip, text, {2, baseline_offset(pixel_size)}, pixel_size, colour);
  cv::Mat rotated;
  cv::rotate(strip, rotated, cv::ROTATE_90_COUNTERCLOCKWISE);
  const cv::Point corner(x_centre - rotated.cols / 2, y_bottom - rotated.rows);
  const cv::Rect target = cv::Rect(corner.x, corner.y, rotated.cols, rotated.rows) &
                          cv::Rect(0, 0, canvas.cols, canvas.rows);
  if (target.area() == 0) return;
  const cv::Mat source = rotated(target - corner);
  cv::Mat destination = canvas(target);
  cv::min(destination, source, destination);
}

std::vector<std::string> wrap_text(std::string_view text, int pixel_size, int max_width,
                                   int max_lines) {
  std::vector<std::string> lines;
  if (max_lines <= 0) return lines;
  const std::string clean = printable(text);
  const std::lock_guard<std::mutex> lock(text_mutex);
  FreeType2& face = face_for(clean + std::string(kEllipsis));
  const std::vector<std::size_t> cuts = boundaries(break_iterator(true), clean);
  std::string line;
  bool left_over = false;
  for (std::size_t s = 0; s + 1 < cuts.size(); ++s) {
    const std::string segment = clean.substr(cuts[s], cuts[s + 1] - cuts[s]);
    if (line.empty() || measure(face, trim_right(line + segment), pixel_size) <= max_width) {
      line += segment;
      continue;
    }
    lines.push_back(trim_right(line));
    line = segment;
    if (static_cast<int>(lines.size()) == max_lines) {
      left_over = true;
      break;
    }
  }
  line = trim_right(line);
  if (!left_over && !line.empty()) lines.push_back(line);
  for (std::string& l : lines) l = fit_locked(l, pixel_size, max_width);
  if (left_over)
    lines.back() = fit_locked(lines.back() + std::string(kEllipsis), pixel_size, max_width);
  return lines;
}

}  // namespace render_detail
}  // namespace mmsearch
