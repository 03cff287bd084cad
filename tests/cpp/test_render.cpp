#include <gtest/gtest.h>
#include <unicode/utf8.h>

#include <cstdlib>

#include "mmsearch/error.h"
#include "mmsearch/render.h"

using namespace mmsearch;

namespace {

// Names from the study's folders, one per script the default font must cover.
const std::vector<std::string> kWords = {"デザート", "Пельмени", "tiramisù",
                                         "甜点",     "Γλυκά",    "비빔밥"};

int dark_pixels(const RgbImage& image) {
  int count = 0;
  for (std::size_t i = 0; i < image.pixels.size(); i += 3) {
    if (image.pixels[i] + image.pixels[i + 1] + image.pixels[i + 2] < 3 * 128) ++count;
  }
  return count;
}

bool valid_utf8(const std::string& text) {
  for (std::int32_t i = 0; i < static_cast<std::int32_t>(text.size());) {
    UChar32 c = 0;
    U8_NEXT(text.data(), i, static_cast<std::int32_t>(text.size()), c);
    if (c < 0) return false;
  }
  return true;
}

// Sets an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    setenv(name, value, 1);
  }
  ~ScopedEnv() {
    if (old_.empty()) {
      unsetenv(name_);
    } else {
      setenv(name_, old_.c_str(), 1);
    }
  }

 private:
  const char* name_;
  std::string old_;
};

}  // namespace

TEST(Text, EachTextGetsAFontThatHasAllItsCharacters) {
  for (const std::string& word : kWords) {
    const FontFace font = font_for_text(word);
    EXPECT_TRUE(font.missing.empty()) << word << " in " << font.file;
  }
  // Noto Sans CJK is preferred; it has basic Greek but not the tonos letters of "Γλυκά",
  // which another installed font (DejaVu Sans on Debian) then draws.
  for (const std::string word : {"デザート", "Пельмени", "tiramisù", "甜点", "비빔밥", "αβγ"}) {
    EXPECT_NE(font_for_text(word).file.string().find("NotoSansCJK"), std::string::npos) << word;
  }
}

TEST(Text, CharactersNoFontHasAreReportedAndStillDrawn) {
  // U+0378 is unassigned: no font has it. It is drawn as the missing-glyph box.
  const FontFace font = font_for_text("a\u0378b");
  EXPECT_EQ(font.missing, std::u32string(U"\u0378"));
  EXPECT_GT(dark_pixels(render_text_line("a\u0378b", 20)), dark_pixels(render_text_line("ab", 20)));
}

TEST(Text, EveryScriptDrawsInk) {
  for (const std::string& word : kWords) {
    const RgbImage image = render_text_line(word, 20);
    ASSERT_GT(image.width, 20) << word;
    // A handful of glyphs at 20 px: well over a hundred dark pixels each.
    EXPECT_GT(dark_pixels(image), 40 * static_cast<int>(word.size() / 3)) << word;
    EXPECT_GT(text_width(word, 20), 10) << word;
  }
}

TEST(Text, DifferentNonLatinWordsDrawDifferentPixels) {
  // The old ASCII fonts drew every one of these as "????".
  const std::vector<std::string> words = {"デザート", "甜点心", "Пельмени", "Γλυκίσματα"};
  for (std::size_t i = 0; i < words.size(); ++i) {
    for (std::size_t j = i + 1; j < words.size(); ++j) {
      const RgbImage a = render_text_line(words[i], 20);
      const RgbImage b = render_text_line(words[j], 20);
      EXPECT_TRUE(a.width != b.width || a.pixels != b.pixels) << words[i] << " vs " << words[j];
    }
  }
  // Same length, one character apart.
  const RgbImage a = render_text_line("甜点", 20), b = render_text_line("甜品", 20);
  ASSERT_EQ(a.width, b.width);
  EXPECT_NE(a.pixels, b.pixels);
}

TEST(Text, LongLabelsAreCutBetweenCharactersWithAnEllipsis) {
  const std::string ellipsis = "\u2026";
  const std::string label = "とても長い名前のデザートの写真ファイル-номер-001.jpg";
  const int max_width = 120;
  ASSERT_GT(text_width(label, 14), max_width);
  const std::string cut = fit_text(label, 14, max_width);
  EXPECT_TRUE(valid_utf8(cut)) << cut;
  ASSERT_GT(cut.size(), ellipsis.size());
  EXPECT_EQ(cut.substr(cut.size() - ellipsis.size()), ellipsis);
  const std::string kept = cut.substr(0, cut.size() - ellipsis.size());
  EXPECT_EQ(label.compare(0, kept.size(), kept), 0) << cut;
  EXPECT_LE(text_width(cut, 14), max_width);
  // The longest such prefix: one more character would not fit.
  const std::string longer = label.substr(0, kept.size() + 3) + ellipsis;
  EXPECT_GT(text_width(longer, 14), max_width);

  // A fitting label is kept whole.
  EXPECT_EQ(fit_text("dish-001.jpg", 14, 200), "dish-001.jpg");
  // Nothing fits in 2 pixels, not even the ellipsis.
  EXPECT_EQ(fit_text(label, 14, 2), "");
}

TEST(Text, CutsKeepGraphemeClustersWhole) {
  // "é" as e + COMBINING ACUTE ACCENT (3 bytes): a cut between the two would leave a bare e.
  std::string label;
  for (int i = 0; i < 40; ++i) label += "e\u0301";
  const std::string cut = fit_text(label, 16, 100);
  const std::string kept = cut.substr(0, cut.size() - std::string("\u2026").size());
  ASSERT_FALSE(kept.empty());
  EXPECT_EQ(kept.size() % 3, 0u) << cut;
  EXPECT_TRUE(valid_utf8(cut));
}

TEST(Text, ControlsAndBrokenUtf8BecomeDrawableText) {
  EXPECT_EQ(fit_text("a\nb\tc", 14, 500), "a b c");
  const std::string fixed = fit_text("caf\xE9 \xFF", 14, 500);
  EXPECT_TRUE(valid_utf8(fixed));
  EXPECT_EQ(fixed, "caf\uFFFD \uFFFD");
}

TEST(Text, FontOverrideByEnvironment) {
  const FontFace found = font_for_text("Пельмени");
  {
    const ScopedEnv env("MMSEARCH_FONT", found.file.c_str());
    EXPECT_EQ(font_for_text("甜点").file, found.file);
    EXPECT_GT(text_width("甜点", 20), 10);
  }
  {
    const ScopedEnv env("MMSEARCH_FONT", "/no/such/font.ttf");
    try {
      text_width("tiramisù", 20);
      FAIL() << "no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kInput);
      EXPECT_NE(std::string(e.what()).find("/no/such/font.ttf"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("MMSEARCH_FONT"), std::string::npos) << e.what();
    }
  }
  {
    // A file that is not a font.
    const ScopedEnv env("MMSEARCH_FONT", MMSEARCH_SOURCE_DIR "/CMakeLists.txt");
    EXPECT_THROW(font_for_text("x"), Error);
  }
  EXPECT_EQ(font_for_text("Пельмени").file, found.file);
}
