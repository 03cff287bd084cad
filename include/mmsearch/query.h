// Answering queries over an indexed scope: text, image and weighted combinations, against the
// stored image, caption-text or multimodal vectors, with optional ITM re-ranking.
//
// Which vectors meet (E = projection dim, D = hidden dim; rules from the manifest):
//   query text  vs image      : text_proj CLS  . image_proj       similarity.text_image
//   query image vs image      : image_proj     . image_proj       similarity.image_image
//   query text  vs text       : text_proj CLS  . text_proj CLS    cls
//   query image vs text       : image_proj     . text_proj CLS    similarity.text_image
//   query image vs multimodal : image summary  . multimodal summary (D, normalised)  cls
//   query text  vs multimodal : text CLS (D, normalised) . multimodal summary        cls
// (summary = BLIP CLS row, BLIP-2 mean of the query outputs; see indexer.h.)
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mmsearch/encoder.h"
#include "mmsearch/index.h"
#include "mmsearch/search.h"

namespace mmsearch {

struct QueryTerm {
  enum class Kind {
    kText,
    kImage,    // a query image, decoded from `value` (its path) unless `pixels` holds it
    kIndexed,  // an indexed file (`value`: its path), searched by its stored vectors
  };
  Kind kind = Kind::kText;
  std::string value;  // the text, or the image path
  float weight = 1.0f;
  // kImage: the image already decoded (an upload); `value` then only labels it.
  std::shared_ptr<const RgbImage> pixels;
};

struct QueryOptions {
  std::filesystem::path scope;
  Against against = Against::kImage;
  std::int64_t k = 5;
  float threshold = -std::numeric_limits<float>::infinity();
  int rerank = 0;  // re-score the top N with the ITM head (text terms against images)
  // Re-score until the result is proven exact however long it takes (see IndexStore::search);
  // by default at most max_rescored candidates (0 = the store's default).
  bool exact = false;
  std::int64_t max_rescored = 0;
  // Lists of the approximate-search index to probe (0: its default); see SearchRequest.
  std::int64_t nprobe = 0;
  DecodeOptions decode;
};

struct QueryHit {
  int rank = 0;
  float score = 0;
  std::optional<float> itc_score;  // with --rerank: the contrastive part of the score
  std::optional<float> itm_score;  // with --rerank: the ITM logit part
  std::string path;
  std::string caption;
  std::string caption_en;
  std::string category;
};

// Where a query's time went, in milliseconds (`-v` logs them, `--json` reports them).
struct QueryPhases {
  double load_ms = 0;      // loading the modules the terms need
  double tokenize_ms = 0;  // pre_caption + WordPiece
  double forward_ms = 0;   // the encoders' forward passes (query images decoded included)
  double search_ms = 0;    // IndexStore::search: selecting, scanning, re-scoring, owners
  // The parts of search_ms (SearchResult has their meaning).
  double select_ms = 0, ann_ms = 0, scan_ms = 0, rescore_ms = 0, owners_ms = 0;
  double rerank_ms = 0;  // ITM re-ranking
};

struct QueryResult {
  std::string model_id;
  std::int64_t searched = 0;  // items scored
  std::int64_t rescored = 0;  // items whose full vectors the second stage re-scored
  bool proven_exact = true;   // see IndexStore::search
  bool approximate = false;   // the approximate-search index chose candidates
  std::int64_t nprobe = 0;    // lists it probed
  std::vector<QueryHit> hits;
  QueryPhases phases;
};

// Throws Error(kIndex) when the scope holds nothing for this model, saying which models did
// index it (or that it was never indexed) and what to run; Error(kInput) for an unreadable
// query image or a kIndexed path the store does not hold for this model; Error(kUsage) for --rerank
// without a text term or an ITM head.
QueryResult run_query(Encoder& encoder, const IndexStore& store,
                      const std::vector<QueryTerm>& terms, const QueryOptions& options);

// Error(kIndex) for a scope with no vectors of this model: names the models that did index it.
[[noreturn]] void throw_scope_not_indexed(const IndexStore& store,
                                          const std::filesystem::path& scope,
                                          const std::string& model_id);

}  // namespace mmsearch
