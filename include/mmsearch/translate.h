// Offline caption translation with a MarianMT (OPUS-MT) bundle (issue 6; models/README.md,
// "Translation bundles"). Tokenisation is sentencepiece + the Marian vocabulary, exactly as
// transformers 4.33 MarianTokenizer; search is greedy or beam search with the 4.33 generate()
// rules (bad-words and forced-EOS processors, renormalised log-probabilities, 4.33 beam
// hypothesis scoring and stop test). Output is deterministic.
//
// sentencepiece is not linked into libmmsearch: it is reached through a small shim library
// (libmmsearch_spm.so) loaded with dlopen(RTLD_LOCAL | RTLD_DEEPBIND), because Debian's
// libsentencepiece carries protobuf-lite symbols that clash with libtorch's libprotobuf.
// The shim is looked for at $MMSEARCH_SPM_SHIM, beside the executable, in ../lib/mmsearch
// from it, in the build tree and in the install prefix.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace mmsearch {

struct ManifestFile;  // bundle.h

// Settings of a translation bundle's manifest (family "marian").
struct TranslatorManifest {
  std::string name;
  std::string description;
  std::string source_lang;
  std::string target_lang;
  // tokenizer
  std::string source_spm = "source.spm";
  std::string target_spm = "target.spm";
  std::string vocab = "vocab.json";
  int64_t vocab_size = 0;
  int64_t eos_token_id = 0;
  int64_t unk_token_id = 1;
  int64_t pad_token_id = 0;
  int model_max_length = 512;  // source ids incl. </s>; longer inputs are truncated
  // dims
  int d_model = 0, encoder_layers = 0, decoder_layers = 0, heads = 0, head_dim = 0;
  int max_positions = 0;
  // generation
  int64_t decoder_start_token_id = 0;
  int64_t forced_eos_token_id = -1;    // -1: none
  std::vector<int64_t> bad_words_ids;  // single-token bad words
  int num_beams = 1;
  int max_length = 512;  // decoder length cap incl. the start token
  double length_penalty = 1.0;
  bool renormalize_logits = true;
  std::string encoder_module = "encoder.pt";
  std::string decoder_module = "decoder.pt";
};

// True for a text of nothing but ASCII whitespace: it is translated to "" without the model.
bool is_blank_text(std::string_view text);

// MarianTokenizer (transformers 4.33) on top of the two sentencepiece models.
class MarianTokenizer {
 public:
  // Throws Error(kModel) naming the file when an .spm or vocab.json is missing or unreadable.
  MarianTokenizer(const std::filesystem::path& source_spm, const std::filesystem::path& target_spm,
                  const std::filesystem::path& vocab_json, int model_max_length = 512);
  ~MarianTokenizer();
  MarianTokenizer(MarianTokenizer&&) noexcept;
  MarianTokenizer& operator=(MarianTokenizer&&) noexcept;

  // Pieces before the vocabulary lookup (tok.tokenize); `target` uses target.spm.
  std::vector<std::string> tokenize(std::string_view text, bool target = false) const;
  // Ids with </s> appended. With `truncate`, at most model_max_length ids (the first
  // model_max_length-1, then </s>); `*truncated` tells whether anything was cut.
  std::vector<int64_t> encode(std::string_view text, bool target = false, bool truncate = false,
                              bool* truncated = nullptr) const;
  // tok.decode(ids, skip_special_tokens, clean_up_tokenization_spaces).
  std::string decode(const std::vector<int64_t>& ids, bool skip_special = true,
                     bool clean_up = true) const;

  int64_t eos_id() const;
  int64_t unk_id() const;
  int64_t pad_id() const;
  int64_t vocab_size() const;
  int model_max_length() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct TranslateOptions {
  int num_beams = 0;              // <= 0: the manifest's generation.num_beams; 1 = greedy
  double length_penalty = -1e30;  // < -1e29: the manifest's
  int max_length = 0;             // <= 0: the manifest's (decoder length incl. the start token)
  int max_new_tokens = 0;         // > 0: max_length = 1 + max_new_tokens (transformers rule)
  int batch_size = 16;            // captions per model call
};

struct Translation {
  std::string source;               // the input text
  std::string text;                 // the translation ("" for an empty / blank input)
  std::vector<int64_t> source_ids;  // encoder input, </s> included
  std::vector<int64_t>
      output_ids;          // decoder start ... </s> (transformers `sequences` row, unpadded)
  double score = 0.0;      // beam: normalised hypothesis score; greedy: sum of log-probs
  bool truncated = false;  // the input was longer than the model's limit
  std::string warning;     // set when truncated (or otherwise degraded)
};

class Translator {
 public:
  // Loads a bundle folder (mmsearch.json with family "marian"). Throws Error(kModel) for a
  // missing / invalid bundle or file (naming it), and when sha256 checks fail (verify_hashes;
  // checked files are remembered in default_verify_cache(), as for image-text bundles).
  explicit Translator(const std::filesystem::path& bundle_dir, bool verify_hashes = true);
  ~Translator();
  Translator(Translator&&) noexcept;
  Translator& operator=(Translator&&) noexcept;

  // Finds `name_or_path` (a bundle folder, or a name on `search_path`): locate_bundle().
  static std::filesystem::path locate(const std::string& name_or_path,
                                      const std::vector<std::filesystem::path>& search_path);

  // The simple interface for the indexer / query: one English string per input, same order.
  std::vector<std::string> translate(const std::vector<std::string>& texts);
  // Everything: ids, scores, truncation warnings. Batched by options.batch_size.
  std::vector<Translation> translate_detailed(const std::vector<std::string>& texts,
                                              const TranslateOptions& options = {});
  // Search on already tokenised sources (each with </s>); returns one `sequences` row per
  // source, without padding, as transformers generate() would (decoder start first, </s>
  // last unless the length cap was hit). `scores` (optional) gets the per-row score.
  std::vector<std::vector<int64_t>> generate(const std::vector<std::vector<int64_t>>& source_ids,
                                             const TranslateOptions& options = {},
                                             std::vector<double>* scores = nullptr);

  const TranslatorManifest& manifest() const;
  const MarianTokenizer& tokenizer() const;
  const std::filesystem::path& dir() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Reads and validates a translation bundle manifest (no module is loaded). Throws Error(kModel)
// naming the manifest and the bad field.
TranslatorManifest read_translator_manifest(const std::filesystem::path& bundle_dir);
TranslatorManifest read_translator_manifest(const ManifestFile& file);

}  // namespace mmsearch
