// bert-base-uncased tokenisation as transformers' slow BertTokenizer (4.26 / 4.33) does it for
// LAVIS, in the same order of steps, because the order is observable:
//  1. special tokens are split out case-sensitively (leftmost, longest);
//  2. the rest is lowercased character by character (no Final_Sigma);
//  3. BasicTokenizer: drop NUL / U+FFFD / C*, BERT whitespace -> ' ', spaces around CJK
//     ideographs, split on str.isspace(), then per word (unless special): NFD, drop Mn,
//     split off every punctuation character;
//  4. WordPiece: words over max_input_chars_per_word -> unk, else greedy longest match.
#include <algorithm>
#include <fstream>
#include <string>
#include <utility>

#include "mmsearch/error.h"
#include "mmsearch/text.h"
#include "text_unicode.h"

namespace mmsearch {
namespace {

namespace uni = text_unicode;

// Python's str.split() without arguments: pieces between runs of str.isspace() characters.
template <typename Visit>
void for_each_python_word(std::u32string_view text, Visit&& visit) {
  std::size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && uni::is_python_whitespace(text[i])) ++i;
    const std::size_t start = i;
    while (i < text.size() && !uni::is_python_whitespace(text[i])) ++i;
    if (i > start) visit(text.substr(start, i - start));
  }
}

std::vector<std::string> read_vocab_file(const std::filesystem::path& vocab_file) {
  std::ifstream in(vocab_file, std::ios::binary);
  if (!in) {
    throw Error(ErrorKind::kModel, "cannot read tokenizer vocab file " + vocab_file.string());
  }
  std::vector<std::string> vocab;
  std::string line;
  // Like transformers' load_vocab: one token per line, only the trailing "\n" removed.
  while (std::getline(in, line)) vocab.push_back(line);
  if (in.bad()) {
    throw Error(ErrorKind::kModel,
                "error while reading tokenizer vocab file " + vocab_file.string());
  }
  if (vocab.empty()) {
    throw Error(ErrorKind::kModel, "tokenizer vocab file " + vocab_file.string() + " is empty");
  }
  return vocab;
}

}  // namespace

WordPieceTokenizer::WordPieceTokenizer(const std::filesystem::path& vocab_file,
                                       TokenizerOptions options)
    : options_(std::move(options)), vocab_(read_vocab_file(vocab_file)) {
  try {
    validate_and_index();
  } catch (const Error& error) {
    throw Error(error.kind(), vocab_file.string() + ": " + error.what());
  }
}

WordPieceTokenizer::WordPieceTokenizer(std::vector<std::string> vocab, TokenizerOptions options)
    : options_(std::move(options)), vocab_(std::move(vocab)) {
  validate_and_index();
}

void WordPieceTokenizer::validate_and_index() {
  if (vocab_.empty()) throw Error(ErrorKind::kModel, "tokenizer vocabulary is empty");
  if (options_.max_input_chars_per_word <= 0) {
    throw Error(ErrorKind::kModel, "max_input_chars_per_word must be positive");
  }
  token_ids_.reserve(vocab_.size());
  for (std::size_t id = 0; id < vocab_.size(); ++id) {
    // A duplicated line maps to its last id, as in transformers' dict-building loop.
    token_ids_[vocab_[id]] = static_cast<std::int64_t>(id);
    longest_vocab_entry_chars_ =
        std::max(longest_vocab_entry_chars_, uni::decode_utf8(vocab_[id]).size());
  }

  const auto vocab_count = static_cast<std::int64_t>(vocab_.size());
  for (const auto& [name, id] : options_.added_tokens) {
    if (name.empty()) throw Error(ErrorKind::kModel, "added special token with an empty name");
    if (id >= 0 && id < vocab_count && vocab_[static_cast<std::size_t>(id)] == name) {
      continue;  // already in the vocab file under this id: only marks it special
    }
    if (id < vocab_count) {
      throw Error(ErrorKind::kModel, "added special token " + name + " has id " +
                                         std::to_string(id) +
                                         ", which the vocab file gives to another token");
    }
    if (!added_token_names_.emplace(id, name).second) {
      throw Error(ErrorKind::kModel, "added special tokens " + added_token_names_[id] + " and " +
                                         name + " share id " + std::to_string(id));
    }
  }

  const auto unk = token_ids_.find(options_.unk_token);
  if (unk == token_ids_.end()) {
    throw Error(ErrorKind::kModel, "unknown token " + options_.unk_token + " is not in the vocab");
  }
  unk_id_ = unk->second;

  std::vector<std::string> specials = options_.never_split;
  specials.push_back(options_.unk_token);
  for (const auto& [name, id] : options_.added_tokens) specials.push_back(name);
  for (const auto& [role, id] : {std::pair<const char*, std::int64_t>{"cls_id", options_.cls_id},
                                 {"sep_id", options_.sep_id},
                                 {"pad_id", options_.pad_id}}) {
    if ((id < 0 || id >= vocab_count) && added_token_names_.count(id) == 0) {
      throw Error(ErrorKind::kModel, std::string(role) + " " + std::to_string(id) +
                                         " is neither in the vocab nor an added token");
    }
    specials.push_back(id_to_token(id));
  }
  for (const std::string& special : specials) {
    if (special.empty()) throw Error(ErrorKind::kModel, "empty special token");
    if (token_ids_.count(special) == 0 && options_.added_tokens.count(special) == 0) {
      throw Error(ErrorKind::kModel,
                  "special token " + special + " is neither in the vocab nor an added token");
    }
    std::u32string decoded = uni::decode_utf8(special);
    if (special_token_set_.insert(decoded).second) special_tokens_.push_back(std::move(decoded));
  }
  std::sort(special_tokens_.begin(), special_tokens_.end(),
            [](const std::u32string& a, const std::u32string& b) { return a.size() > b.size(); });
}

std::int64_t WordPieceTokenizer::token_to_id(const std::string& token) const {
  // Added tokens win over the vocab file, as in _convert_token_to_id_with_added_voc.
  const auto added = options_.added_tokens.find(token);
  if (added != options_.added_tokens.end()) return added->second;
  const auto found = token_ids_.find(token);
  return found == token_ids_.end() ? unk_id_ : found->second;
}

const std::string& WordPieceTokenizer::id_to_token(std::int64_t id) const {
  if (id >= 0 && id < static_cast<std::int64_t>(vocab_.size())) {
    return vocab_[static_cast<std::size_t>(id)];
  }
  const auto added = added_token_names_.find(id);
  if (added == added_token_names_.end()) {
    throw Error(ErrorKind::kUsage, "token id " + std::to_string(id) + " is out of range");
  }
  return added->second;
}

std::vector<std::string> WordPieceTokenizer::tokenize(std::string_view text) const {
  const std::u32string decoded = uni::decode_utf8(text);
  std::vector<std::string> tokens;
  std::u32string_view rest(decoded);
  std::size_t segment_start = 0;
  std::size_t i = 0;
  auto flush_segment = [&](std::size_t end) {
    if (end > segment_start) {
      std::vector<std::string> pieces =
          tokenize_segment(rest.substr(segment_start, end - segment_start));
      tokens.insert(tokens.end(), std::make_move_iterator(pieces.begin()),
                    std::make_move_iterator(pieces.end()));
    }
  };
  while (i < rest.size()) {
    const std::u32string* matched = nullptr;
    for (const std::u32string& special : special_tokens_) {  // longest first
      if (special.front() == rest[i] && rest.compare(i, special.size(), special) == 0) {
        matched = &special;
        break;
      }
    }
    if (matched == nullptr) {
      ++i;
      continue;
    }
    flush_segment(i);
    tokens.push_back(uni::encode_utf8(*matched));
    i += matched->size();
    segment_start = i;
  }
  flush_segment(rest.size());
  return tokens;
}

std::vector<std::string> WordPieceTokenizer::tokenize_segment(std::u32string_view segment) const {
  // transformers lowercases outside special tokens one character at a time (a regex that
  // matches ".+?"), before BasicTokenizer; its own per-word lower() then finds nothing left.
  std::u32string cleaned;
  cleaned.reserve(segment.size() + 8);
  std::u32string lowered;
  for (char32_t c : segment) {
    lowered.clear();
    if (options_.lowercase) {
      uni::append_lowercase(c, lowered);
    } else {
      lowered.push_back(c);
    }
    for (char32_t l : lowered) {
      if (l == 0 || l == 0xFFFD || uni::is_bert_control(l)) continue;
      if (uni::is_bert_whitespace(l)) {
        cleaned.push_back(' ');
      } else if (options_.tokenize_chinese_chars && uni::is_cjk_ideograph(l)) {
        cleaned.push_back(' ');
        cleaned.push_back(l);
        cleaned.push_back(' ');
      } else {
        cleaned.push_back(l);
      }
    }
  }

  std::vector<std::string> tokens;
  for_each_python_word(cleaned, [&](std::u32string_view word) {
    if (special_token_set_.count(std::u32string(word)) != 0) {
      // BasicTokenizer keeps a special token whole, then hands it to WordPiece like any word.
      append_wordpieces(word, tokens);
      return;
    }
    std::u32string normalized;
    if (options_.lowercase) {
      for (char32_t c : uni::decompose_canonical(word)) {
        if (!uni::is_nonspacing_mark(c)) normalized.push_back(c);
      }
    } else {
      normalized = std::u32string(word);
    }
    // Every punctuation character is a word of its own; the pieces are re-split on whitespace
    // (transformers joins them with " " and splits again).
    std::size_t start = 0;
    auto emit = [&](std::size_t end) {
      if (end > start) {
        for_each_python_word(std::u32string_view(normalized).substr(start, end - start),
                             [&](std::u32string_view piece) { append_wordpieces(piece, tokens); });
      }
    };
    for (std::size_t i = 0; i < normalized.size(); ++i) {
      if (!uni::is_bert_punctuation(normalized[i])) continue;
      emit(i);
      start = i;
      emit(i + 1);
      start = i + 1;
    }
    emit(normalized.size());
  });
  return tokens;
}

void WordPieceTokenizer::append_wordpieces(std::u32string_view word,
                                           std::vector<std::string>& out) const {
  if (word.size() > static_cast<std::size_t>(options_.max_input_chars_per_word)) {
    out.push_back(options_.unk_token);
    return;
  }
  // UTF-8 of the word with the byte offset of every character, so candidate substrings are
  // byte ranges.
  std::string utf8;
  std::vector<std::size_t> offsets;
  offsets.reserve(word.size() + 1);
  for (char32_t c : word) {
    offsets.push_back(utf8.size());
    uni::append_utf8(c, utf8);
  }
  offsets.push_back(utf8.size());

  const std::size_t first_piece = out.size();
  std::string candidate;
  std::size_t start = 0;
  while (start < word.size()) {
    // No vocab entry is longer than longest_vocab_entry_chars_, so longer candidates can be
    // skipped without changing the greedy result.
    std::size_t end = std::min(word.size(), start + longest_vocab_entry_chars_);
    bool found = false;
    for (; end > start; --end) {
      candidate.assign(start > 0 ? "##" : "");
      candidate.append(utf8, offsets[start], offsets[end] - offsets[start]);
      if (token_ids_.count(candidate) != 0) {
        found = true;
        break;
      }
    }
    if (!found) {
      out.resize(first_piece);
      out.push_back(options_.unk_token);
      return;
    }
    out.push_back(candidate);
    start = end;
  }
}

Encoding WordPieceTokenizer::encode(std::string_view text, int max_length) const {
  if (max_length < 0 || max_length == 1) {
    throw Error(ErrorKind::kUsage,
                "max_length must be 0 (no limit) or at least 2, got " + std::to_string(max_length));
  }
  Encoding encoding;
  encoding.tokens = tokenize(text);
  if (max_length > 0 && encoding.tokens.size() + 2 > static_cast<std::size_t>(max_length)) {
    encoding.tokens.resize(static_cast<std::size_t>(max_length) - 2);
  }
  encoding.ids.reserve(encoding.tokens.size() + 2);
  encoding.ids.push_back(options_.cls_id);
  for (const std::string& token : encoding.tokens) encoding.ids.push_back(token_to_id(token));
  encoding.ids.push_back(options_.sep_id);
  encoding.mask.assign(encoding.ids.size(), 1);
  return encoding;
}

BatchEncoding WordPieceTokenizer::encode_batch(const std::vector<std::string>& texts,
                                               int max_length, bool pad_to_max_length) const {
  if (pad_to_max_length && max_length <= 0) {
    throw Error(ErrorKind::kUsage, "padding to max_length needs a positive max_length");
  }
  std::vector<Encoding> encodings;
  encodings.reserve(texts.size());
  std::size_t longest = 0;
  for (const std::string& text : texts) {
    encodings.push_back(encode(text, max_length));
    longest = std::max(longest, encodings.back().ids.size());
  }
  BatchEncoding batch;
  batch.count = static_cast<std::int64_t>(texts.size());
  batch.length = pad_to_max_length ? max_length : static_cast<std::int64_t>(longest);
  const auto row_length = static_cast<std::size_t>(batch.length);
  batch.ids.assign(texts.size() * row_length, options_.pad_id);
  batch.mask.assign(texts.size() * row_length, 0);
  for (std::size_t row = 0; row < encodings.size(); ++row) {
    std::copy(encodings[row].ids.begin(), encodings[row].ids.end(),
              batch.ids.begin() + static_cast<std::ptrdiff_t>(row * row_length));
    std::copy(encodings[row].mask.begin(), encodings[row].mask.end(),
              batch.mask.begin() + static_cast<std::ptrdiff_t>(row * row_length));
  }
  return batch;
}

}  // namespace mmsearch
