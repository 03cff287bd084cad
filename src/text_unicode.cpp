// ICU supplies every character property and mapping here; the only logic of our own is the
// glue that reproduces how Python combines them (str.isspace, Final_Sigma, BERT's classes).
#include "text_unicode.h"

#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>
#include <unicode/ustring.h>
#include <unicode/utf16.h>
#include <unicode/utf8.h>

#include <cstdint>

#include "mmsearch/error.h"
#include "mmsearch/text.h"

namespace mmsearch::text_unicode {
namespace {

// Python 3.11.2 ships unicodedata 14.0.0 (the golden's interpreter).
constexpr std::uint8_t kReferenceUnicodeMajor = 14;

std::int8_t reference_char_type(char32_t c) {
  if (!assigned_in_reference(c)) return U_UNASSIGNED;
  return u_charType(static_cast<UChar32>(c));
}

bool has_reference_property(char32_t c, UProperty property) {
  return assigned_in_reference(c) && u_hasBinaryProperty(static_cast<UChar32>(c), property);
}

}  // namespace

std::u32string decode_utf8(std::string_view text) {
  std::u32string out;
  out.reserve(text.size());
  const auto* bytes = reinterpret_cast<const std::uint8_t*>(text.data());
  const auto length = static_cast<std::int32_t>(text.size());
  if (text.size() > static_cast<std::size_t>(INT32_MAX)) {
    throw Error(ErrorKind::kInput, "text too long (over 2 GiB)");
  }
  std::int32_t offset = 0;
  while (offset < length) {
    const std::int32_t start = offset;
    if (bytes[offset] < 0x80) {  // ASCII fast path: most captions are plain English
      out.push_back(bytes[offset++]);
      continue;
    }
    UChar32 c;
    U8_NEXT(bytes, offset, length, c);
    if (c < 0) {
      throw Error(ErrorKind::kInput,
                  "text is not valid UTF-8 (ill-formed byte sequence at byte offset " +
                      std::to_string(start) + ")");
    }
    out.push_back(static_cast<char32_t>(c));
  }
  return out;
}

void append_utf8(char32_t code_point, std::string& out) {
  if (code_point < 0x80) {
    out.push_back(static_cast<char>(code_point));
    return;
  }
  std::uint8_t buffer[U8_MAX_LENGTH];
  std::int32_t length = 0;
  U8_APPEND_UNSAFE(buffer, length, static_cast<UChar32>(code_point));
  out.append(reinterpret_cast<const char*>(buffer), static_cast<std::size_t>(length));
}

std::string encode_utf8(std::u32string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char32_t c : text) append_utf8(c, out);
  return out;
}

bool assigned_in_reference(char32_t c) {
  if (c < 0x80) return true;
  UVersionInfo age;
  u_charAge(static_cast<UChar32>(c), age);
  // Unassigned code points have age 0.0; u_charType then already answers Cn.
  return age[0] <= kReferenceUnicodeMajor;
}

bool is_python_whitespace(char32_t c) {
  if (c < 0x80) return c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F);
  if (!assigned_in_reference(c)) return false;
  const auto direction = u_charDirection(static_cast<UChar32>(c));
  return direction == U_WHITE_SPACE_NEUTRAL || direction == U_BLOCK_SEPARATOR ||
         direction == U_SEGMENT_SEPARATOR ||
         u_charType(static_cast<UChar32>(c)) == U_SPACE_SEPARATOR;
}

bool is_bert_whitespace(char32_t c) {
  if (c == ' ' || c == '\t' || c == '\n' || c == '\r') return true;
  return reference_char_type(c) == U_SPACE_SEPARATOR;
}

bool is_bert_control(char32_t c) {
  if (c == '\t' || c == '\n' || c == '\r') return false;
  switch (reference_char_type(c)) {
    case U_CONTROL_CHAR:      // Cc
    case U_FORMAT_CHAR:       // Cf
    case U_SURROGATE:         // Cs (cannot come out of valid UTF-8, listed for completeness)
    case U_PRIVATE_USE_CHAR:  // Co
    case U_UNASSIGNED:        // Cn
      return true;
    default:
      return false;
  }
}

bool is_bert_punctuation(char32_t c) {
  if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
      (c >= 123 && c <= 126)) {
    return true;
  }
  switch (reference_char_type(c)) {
    case U_DASH_PUNCTUATION:
    case U_START_PUNCTUATION:
    case U_END_PUNCTUATION:
    case U_CONNECTOR_PUNCTUATION:
    case U_OTHER_PUNCTUATION:
    case U_INITIAL_PUNCTUATION:
    case U_FINAL_PUNCTUATION:
      return true;
    default:
      return false;
  }
}

bool is_cjk_ideograph(char32_t c) {
  // BERT's own list of blocks (not a Unicode property): kana and hangul are deliberately absent.
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
         (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
         (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

bool is_nonspacing_mark(char32_t c) { return reference_char_type(c) == U_NON_SPACING_MARK; }

void append_lowercase(char32_t c, std::u32string& out) {
  if (c < 0x80) {
    out.push_back((c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c);
    return;
  }
  if (!assigned_in_reference(c)) {
    out.push_back(c);
    return;
  }
  UChar source[U16_MAX_LENGTH];
  std::int32_t source_length = 0;
  U16_APPEND_UNSAFE(source, source_length, static_cast<UChar32>(c));
  // A lone character has no context, so the root locale gives the context-free full mapping
  // (SpecialCasing's unconditional entries, e.g. U+0130) and never the final sigma.
  UChar lowered[8];
  UErrorCode status = U_ZERO_ERROR;
  const std::int32_t lowered_length = u_strToLower(lowered, 8, source, source_length, "", &status);
  if (U_FAILURE(status)) {
    throw Error(ErrorKind::kInternal,
                std::string("ICU lowercase mapping failed: ") + u_errorName(status));
  }
  for (std::int32_t i = 0; i < lowered_length;) {
    UChar32 lowered_char;
    U16_NEXT(lowered, i, lowered_length, lowered_char);
    out.push_back(static_cast<char32_t>(lowered_char));
  }
}

std::u32string lowercase_string(std::u32string_view text) {
  constexpr char32_t kCapitalSigma = 0x03A3;
  std::u32string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != kCapitalSigma) {
      append_lowercase(text[i], out);
      continue;
    }
    // Python's Final_Sigma test: a cased letter before (skipping case-ignorables) and no cased
    // letter after (skipping case-ignorables). ICU's own context test is equivalent, but
    // spelling it out keeps the Unicode 14 gate on the neighbouring characters.
    std::size_t before = i;
    while (before > 0 && has_reference_property(text[before - 1], UCHAR_CASE_IGNORABLE)) --before;
    bool final_sigma = before > 0 && has_reference_property(text[before - 1], UCHAR_CASED);
    if (final_sigma) {
      std::size_t after = i + 1;
      while (after < text.size() && has_reference_property(text[after], UCHAR_CASE_IGNORABLE)) {
        ++after;
      }
      final_sigma = after == text.size() || !has_reference_property(text[after], UCHAR_CASED);
    }
    out.push_back(final_sigma ? 0x03C2 : 0x03C3);
  }
  return out;
}

std::u32string decompose_canonical(std::u32string_view text) {
  bool needs_icu = false;
  for (char32_t c : text) {
    if (c >= 0xC0) {  // nothing below U+00C0 has a canonical decomposition
      needs_icu = true;
      break;
    }
  }
  if (!needs_icu) return std::u32string(text);

  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* nfd = icu::Normalizer2::getNFDInstance(status);
  if (U_FAILURE(status)) {
    throw Error(ErrorKind::kInternal,
                std::string("ICU NFD normaliser unavailable: ") + u_errorName(status));
  }
  const icu::UnicodeString source = icu::UnicodeString::fromUTF32(
      reinterpret_cast<const UChar32*>(text.data()), static_cast<std::int32_t>(text.size()));
  const icu::UnicodeString normalized = nfd->normalize(source, status);
  if (U_FAILURE(status)) {
    throw Error(ErrorKind::kInternal, std::string("ICU NFD failed: ") + u_errorName(status));
  }
  std::u32string out;
  out.reserve(static_cast<std::size_t>(normalized.length()));
  for (std::int32_t i = 0; i < normalized.length();) {
    const UChar32 c = normalized.char32At(i);
    out.push_back(static_cast<char32_t>(c));
    i += U16_LENGTH(c);
  }
  return out;
}

}  // namespace mmsearch::text_unicode

namespace mmsearch {

bool is_valid_utf8(std::string_view text, std::size_t* bad_offset) {
  // ICU walks int32 offsets, as decode_utf8 does; nothing checked here comes near 2 GiB.
  if (text.size() > static_cast<std::size_t>(INT32_MAX)) {
    if (bad_offset) *bad_offset = static_cast<std::size_t>(INT32_MAX);
    return false;
  }
  const auto* bytes = reinterpret_cast<const std::uint8_t*>(text.data());
  const auto length = static_cast<std::int32_t>(text.size());
  for (std::int32_t offset = 0; offset < length;) {
    const std::int32_t start = offset;
    UChar32 c;
    U8_NEXT(bytes, offset, length, c);
    if (c < 0) {
      if (bad_offset) *bad_offset = static_cast<std::size_t>(start);
      return false;
    }
  }
  return true;
}

}  // namespace mmsearch
