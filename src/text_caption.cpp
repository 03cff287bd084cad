// LAVIS BlipCaptionProcessor.pre_caption, step by step:
//   re.sub(r'([.!"()*#:;~])', ' ', caption.lower())
//   re.sub(r'\s{2,}', ' ', ...), rstrip("\n"), strip(" ")
//   split(" ") and keep the first max_words pieces.
#include <string>
#include <string_view>

#include "mmsearch/error.h"
#include "mmsearch/text.h"
#include "text_unicode.h"

namespace mmsearch {
namespace {

bool is_caption_punctuation(char32_t c) {
  switch (c) {
    case '.':
    case '!':
    case '"':
    case '(':
    case ')':
    case '*':
    case '#':
    case ':':
    case ';':
    case '~':
      return true;
    default:
      return false;
  }
}

}  // namespace

std::string pre_caption(std::string_view caption, int max_words) {
  if (max_words < 0) {
    throw Error(ErrorKind::kUsage, "max_words must be >= 0, got " + std::to_string(max_words));
  }
  std::u32string text = text_unicode::lowercase_string(text_unicode::decode_utf8(caption));
  for (char32_t& c : text) {
    if (is_caption_punctuation(c)) c = ' ';
  }

  // \s{2,} -> ' ': a run of two or more whitespace characters becomes one space, while a
  // single one (a lone tab, a lone U+3000) is kept as it is.
  std::u32string collapsed;
  collapsed.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    std::size_t run_end = i;
    while (run_end < text.size() && text_unicode::is_python_whitespace(text[run_end])) ++run_end;
    if (run_end - i >= 2) {
      collapsed.push_back(' ');
      i = run_end;
    } else {
      collapsed.push_back(text[i++]);
    }
  }

  std::size_t end = collapsed.size();
  while (end > 0 && collapsed[end - 1] == '\n') --end;  // rstrip("\n")
  std::size_t begin = 0;
  while (begin < end && collapsed[begin] == ' ') ++begin;  // strip(" ")
  while (end > begin && collapsed[end - 1] == ' ') --end;
  std::u32string_view stripped(collapsed.data() + begin, end - begin);

  // split(" ") counts empty pieces too, so "a" has one word and "" has one (empty) word.
  std::size_t words_seen = 1;
  std::size_t cut = stripped.size();
  for (std::size_t i = 0; i < stripped.size(); ++i) {
    if (stripped[i] != ' ') continue;
    if (words_seen == static_cast<std::size_t>(max_words)) {
      cut = i;
      break;
    }
    ++words_seen;
  }
  if (max_words == 0) cut = 0;
  return text_unicode::encode_utf8(stripped.substr(0, cut));
}

}  // namespace mmsearch
