// Character classes and mappings as Python 3.11 (Unicode 14.0) sees them, built on ICU.
// Private to the text pipeline (pre_caption and the WordPiece tokenizer).
#pragma once

#include <string>
#include <string_view>

namespace mmsearch::text_unicode {

// Strict UTF-8 decoding (no overlongs, surrogates or code points above U+10FFFF).
// Throws Error(kInput) naming the byte offset of the first ill-formed sequence.
std::u32string decode_utf8(std::string_view text);
void append_utf8(char32_t code_point, std::string& out);
std::string encode_utf8(std::u32string_view text);

// The reference ran on Python 3.11, whose unicodedata is Unicode 14.0; ICU may be newer.
// Characters assigned after 14.0 are unassigned (category Cn) for every question below.
bool assigned_in_reference(char32_t c);

// str.isspace(): bidi class WS, B or S, or category Zs (what re's \s and str.split() use).
bool is_python_whitespace(char32_t c);
// BertTokenizer's _is_whitespace: space, \t, \n, \r or category Zs.
bool is_bert_whitespace(char32_t c);
// BertTokenizer's _is_control: any category C* except \t, \n, \r.
bool is_bert_control(char32_t c);
// BertTokenizer's _is_punctuation: printable ASCII that is not alphanumeric, or category P*.
bool is_bert_punctuation(char32_t c);
// BertTokenizer's _is_chinese_char: the CJK Unified / Compatibility ideograph blocks.
bool is_cjk_ideograph(char32_t c);
bool is_nonspacing_mark(char32_t c);  // category Mn

// Full lowercase mapping of a single character without context (Python's ch.lower()):
// U+0130 becomes "i\u0307", U+03A3 always becomes U+03C3.
void append_lowercase(char32_t c, std::u32string& out);
// Python's str.lower() on a whole string: as above plus the Final_Sigma context rule.
std::u32string lowercase_string(std::u32string_view text);

// Canonical decomposition (NFD).
std::u32string decompose_canonical(std::u32string_view text);

}  // namespace mmsearch::text_unicode
