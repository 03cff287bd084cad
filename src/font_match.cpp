// Which font draws a text: MMSEARCH_FONT, else fontconfig's best match for its characters.
#include <fontconfig/fontconfig.h>
#include <unicode/utf8.h>

#include <cstdlib>
#include <memory>
#include <system_error>

#include "mmsearch/error.h"
#include "mmsearch/render.h"

namespace fs = std::filesystem;

namespace mmsearch {
namespace {

struct PatternDeleter {
  void operator()(FcPattern* p) const { FcPatternDestroy(p); }
};
struct CharSetDeleter {
  void operator()(FcCharSet* c) const { FcCharSetDestroy(c); }
};
using Pattern = std::unique_ptr<FcPattern, PatternDeleter>;
using CharSet = std::unique_ptr<FcCharSet, CharSetDeleter>;

const char* const kInstallHint =
    "install one (apt-get install fonts-noto-cjk) or set MMSEARCH_FONT to a font file";

// Printable code points only: the drawing turns controls into spaces, and ill-formed bytes
// into U+FFFD, which every font's missing glyph stands for anyway.
std::u32string drawn_characters(std::string_view text) {
  std::u32string out;
  for (std::int32_t i = 0; i < static_cast<std::int32_t>(text.size());) {
    UChar32 c = 0;
    U8_NEXT(text.data(), i, static_cast<std::int32_t>(text.size()), c);
    if (c > 0x20 && !(c >= 0x7F && c < 0xA0)) out += static_cast<char32_t>(c);
  }
  return out;
}

// Han characters look different in Japanese, Korean and Chinese fonts: kana or hangul say
// which face of the Noto CJK collection suits the text; Simplified Chinese otherwise.
const char* preferred_family(const std::u32string& chars) {
  for (const char32_t c : chars) {
    if ((c >= 0x3040 && c <= 0x30FF) || (c >= 0x31F0 && c <= 0x31FF)) return "Noto Sans CJK JP";
    if ((c >= 0xAC00 && c <= 0xD7AF) || (c >= 0x1100 && c <= 0x11FF)) return "Noto Sans CJK KR";
  }
  return "Noto Sans CJK SC";
}

CharSet charset_of(const std::u32string& chars) {
  CharSet set(FcCharSetCreate());
  for (const char32_t c : chars) FcCharSetAddChar(set.get(), c);
  return set;
}

std::u32string missing_from(const std::u32string& chars, const FcCharSet* coverage) {
  std::u32string missing;
  for (const char32_t c : chars) {
    if (coverage == nullptr || !FcCharSetHasChar(coverage, c)) missing += c;
  }
  return missing;
}

FontFace override_font(const std::string& file, const std::u32string& chars) {
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) {
    throw Error(ErrorKind::kInput, "MMSEARCH_FONT names " + file + ", which is not a file");
  }
  int faces = 0;
  const Pattern query(
      FcFreeTypeQuery(reinterpret_cast<const FcChar8*>(file.c_str()), 0, nullptr, &faces));
  if (!query) {
    throw Error(ErrorKind::kInput, "MMSEARCH_FONT names " + file + ", which is not a font file");
  }
  FcCharSet* coverage = nullptr;
  FcPatternGetCharSet(query.get(), FC_CHARSET, 0, &coverage);
  return {file, 0, missing_from(chars, coverage)};
}

}  // namespace

FontFace font_for_text(std::string_view text) {
  const std::u32string chars = drawn_characters(text);
  if (const char* file = std::getenv("MMSEARCH_FONT"); file != nullptr && *file != '\0') {
    return override_font(file, chars);
  }
  // Coverage ranks above the family in fontconfig's matching: a font that has every
  // character wins, and among those Noto Sans CJK.
  const Pattern pattern(FcPatternCreate());
  const CharSet wanted = charset_of(chars);
  FcPatternAddString(pattern.get(), FC_FAMILY,
                     reinterpret_cast<const FcChar8*>(preferred_family(chars)));
  FcPatternAddCharSet(pattern.get(), FC_CHARSET, wanted.get());
  FcPatternAddBool(pattern.get(), FC_SCALABLE, FcTrue);
  FcConfigSubstitute(nullptr, pattern.get(), FcMatchPattern);
  FcDefaultSubstitute(pattern.get());
  FcResult result = FcResultNoMatch;
  const Pattern match(FcFontMatch(nullptr, pattern.get(), &result));
  FcChar8* file = nullptr;
  if (!match || FcPatternGetString(match.get(), FC_FILE, 0, &file) != FcResultMatch) {
    throw Error(ErrorKind::kInput,
                std::string("no font to draw text with (fontconfig found none); ") + kInstallHint);
  }
  int index = 0;
  FcPatternGetInteger(match.get(), FC_INDEX, 0, &index);
  FcCharSet* coverage = nullptr;
  FcPatternGetCharSet(match.get(), FC_CHARSET, 0, &coverage);
  return {reinterpret_cast<const char*>(file), index, missing_from(chars, coverage)};
}

}  // namespace mmsearch
