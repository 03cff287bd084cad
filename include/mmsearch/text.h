// Caption normalisation and bert-base-uncased WordPiece tokenisation, equal to LAVIS
// (pre_caption) and transformers' slow BertTokenizer on every golden case.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace mmsearch {

// LAVIS BlipCaptionProcessor.pre_caption: full Unicode lowercase, the punctuation set
// .!"()*#:;~ to spaces, runs of Unicode whitespace collapsed, stripped, first max_words words.
// Input and output are UTF-8. Invalid UTF-8 throws Error(kInput); max_words < 0 throws
// Error(kUsage) (0 keeps nothing, as LAVIS's slice [:0] does).
std::string pre_caption(std::string_view caption, int max_words = 50);

// Whether `text` is well-formed UTF-8; otherwise `bad_offset` (when given) gets the byte
// offset of the first ill-formed sequence. For checking user input up front; text over 2 GiB
// counts as ill-formed.
bool is_valid_utf8(std::string_view text, std::size_t* bad_offset = nullptr);

struct TokenizerOptions {
  bool lowercase = true;               // do_lower_case (character-wise lowercase + strip accents)
  bool tokenize_chinese_chars = true;  // split CJK ideographs into single characters
  // Special tokens matched case-sensitively before any other processing and never split or
  // lowercased (transformers' all_special_tokens). The tokens of cls_id, sep_id, pad_id,
  // unk_token and every added token are special too, whether listed here or not.
  std::vector<std::string> never_split = {"[UNK]", "[SEP]", "[PAD]", "[CLS]", "[MASK]"};
  // Special tokens added beyond the vocab file, name -> id (transformers add_special_tokens):
  // BLIP-2 {"[DEC]": 30522}; BLIP v1 {"[DEC]": 30522, "[ENC]": 30523}. A bundle's whole
  // special_tokens map may be given: an entry naming the vocab's own token at its id only marks
  // it special. Other ids must be >= the vocab size and distinct (else Error(kModel)).
  std::map<std::string, std::int64_t> added_tokens;
  std::int64_t cls_id = 101;
  std::int64_t sep_id = 102;
  std::int64_t pad_id = 0;
  std::string unk_token = "[UNK]";
  int max_input_chars_per_word = 100;
};

struct Encoding {
  std::vector<std::string> tokens;  // WordPiece tokens without [CLS]/[SEP], after truncation
  std::vector<std::int64_t> ids;    // [CLS] tokens [SEP], after truncation
  std::vector<std::int64_t> mask;   // 1 per id (0 for padding after batching)
};

// Row-major [count, length] batch, padded with pad_id / mask 0 on the right.
struct BatchEncoding {
  std::int64_t count = 0;
  std::int64_t length = 0;
  std::vector<std::int64_t> ids;
  std::vector<std::int64_t> mask;
};

class WordPieceTokenizer {
 public:
  // Reads a vocab.txt (one token per line, id = line number). Throws Error(kModel) naming the
  // file when it cannot be read or lacks the special tokens the options need.
  WordPieceTokenizer(const std::filesystem::path& vocab_file, TokenizerOptions options);
  // Builds from an in-memory vocabulary (tests, the trainer's vocab builder).
  WordPieceTokenizer(std::vector<std::string> vocab, TokenizerOptions options);

  // BasicTokenizer + WordPiece, no special ids added. Invalid UTF-8 throws Error(kInput).
  std::vector<std::string> tokenize(std::string_view text) const;
  std::int64_t token_to_id(const std::string& token) const;  // unk id when absent
  const std::string& id_to_token(std::int64_t id) const;     // Error(kUsage) when out of range
  std::size_t vocab_size() const { return vocab_.size(); }   // the vocab file's entries only
  // Vocab plus added tokens (transformers len(tokenizer), the embedding rows the model needs).
  std::size_t size() const { return vocab_.size() + added_token_names_.size(); }

  // [CLS] + tokens + [SEP]; with max_length > 0, tokens truncated on the right so that the
  // result has at most max_length ids (transformers truncation=True, max_length=N).
  // 0 < max_length < 2 throws Error(kUsage): [CLS] and [SEP] would not fit.
  Encoding encode(std::string_view text, int max_length = 0) const;
  // Batch: pad to the longest (pad_to_max_length false, transformers padding=True) or to
  // max_length (padding="max_length"). max_length > 0 also truncates, as in encode();
  // pad_to_max_length without a max_length throws Error(kUsage).
  BatchEncoding encode_batch(const std::vector<std::string>& texts, int max_length,
                             bool pad_to_max_length) const;

 private:
  void validate_and_index();
  std::vector<std::string> tokenize_segment(std::u32string_view segment) const;
  void append_wordpieces(std::u32string_view word, std::vector<std::string>& out) const;

  TokenizerOptions options_;
  std::vector<std::string> vocab_;
  std::unordered_map<std::string, std::int64_t> token_ids_;
  std::unordered_map<std::int64_t, std::string> added_token_names_;
  std::vector<std::u32string> special_tokens_;  // longest first, for leftmost-longest matching
  std::unordered_set<std::u32string> special_token_set_;
  std::int64_t unk_id_ = 0;
  std::size_t longest_vocab_entry_chars_ = 0;  // bounds the greedy longest-match search
};

}  // namespace mmsearch
