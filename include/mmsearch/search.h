// Scoring, fusion of weighted query terms, and top-k selection over float matrices.
//
// Memory layout (as FAISS): an Embeddings holds `count` items, each of `vectors_per_item`
// vectors of `dim` float32, row-major and contiguous: item i, vector q, component d is
// values[(i * vectors_per_item + q) * dim + d]. BLIP stores 1 vector per item (the CLS
// projection), BLIP-2 stores 32 (one per Q-Former query). Scoring assumes every vector is
// L2-normalised (the `*_proj` outputs are; call l2_normalize() on unprojected ones), so dot
// products are cosines in [-1, 1].
//
// Score rules (the manifest's `similarity` field names them):
// * kCls: q[0] . x[0]. BLIP text<->image and image<->image: the CLS projections.
// * kMaxOverQueries: the max over all pairs of the two items' vectors. With a one-vector text
//   against a 32-query BLIP-2 image this is LAVIS's text->image (and image->text) ITC score,
//   max_q image_proj[q] . text_proj[0] (golden `itc_sim`).
// * kMeanOfQueries: the cosine of the re-normalised means of the items' vectors. The rule for
//   BLIP-2 image->image (and image->multimodal, multimodal->multimodal), because:
//   - The study compares items as wholes in four matrices: image-image, image-text,
//     image-multimodal and multimodal-multimodal. For BLIP-2 three of them pair two 32-row
//     items (image query outputs, multimodal query outputs), and only image-text has the
//     one-vector text side that makes LAVIS's max-over-queries well defined. One rule for the
//     three 32-vs-32 matrices keeps them comparable with each other, and with BLIP's CLS
//     matrices: one summary vector per item, one cosine per pair. The mean is also the
//     summary LAVIS itself uses over the 32 query outputs (the ITM head's logits are
//     averaged over the queries).
//   - Max-over-all-pairs (32 x 32 = 1024 dot products) is dominated by the few generic queries
//     that fire on every photo (hubness): every pair of photos scores high, the gap between
//     same-category and other-category pairs shrinks, and the category blocks fade. The mean
//     lets all 32 queries vote, so what the photos share outweighs what any photo shares with
//     all others.
//   - It is a true cosine: symmetric, self-similarity exactly 1, comparable across queries, so
//     thresholds and the "exclude the query image" rule behave as with BLIP's CLS rule.
//   - It costs one dim-vector per item: the means are computed once per load
//     (mean_of_queries()) and a scan is one matrix-vector product, 32x less memory traffic
//     than scanning all query vectors.
//   Mean-of-pairwise-cosines (the mean of all 1024 dots) was the other candidate: it equals the
//   dot of the un-normalised means, so it ranks like kMeanOfQueries for a fixed query but is
//   not a cosine (self-similarity < 1 and varies per image), which breaks thresholds.
//
// Fusion (rclip-style): each query term (a text or an image) has a weight; a minus sign
// subtracts. combined[i] = sum_t w_t * score_t[i] / sum_t |w_t|. Dividing by the sum of |w|
// keeps the combined score in [-1, 1] and makes a single term with any positive weight score
// exactly like that term alone, so --threshold means the same with one term or several.
//
// Nothing here throws except on inconsistent shapes or bad arguments (Error kUsage).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mmsearch/rules.h"

namespace mmsearch {

struct Embeddings {
  std::int64_t count = 0;
  int vectors_per_item = 0;
  int dim = 0;
  std::vector<float> values;  // count * vectors_per_item * dim

  const float* item(std::int64_t i) const {
    return values.data() + i * static_cast<std::int64_t>(vectors_per_item) * dim;
  }
  float* item(std::int64_t i) {
    return values.data() + i * static_cast<std::int64_t>(vectors_per_item) * dim;
  }
};

// Normalises every vector to unit length in place (zero vectors stay zero).
void l2_normalize(Embeddings& embeddings);

// One vector per item: the re-normalised mean of its vectors. Items with one vector are
// returned normalised and otherwise unchanged.
Embeddings mean_of_queries(const Embeddings& embeddings);

// Scores one query item (query.count must be 1) against every item of `items` under `rule`.
// query.dim must equal items.dim. Returns items.count scores.
// Cost: kCls and single-vector kMeanOfQueries are one matrix-vector product; pass items
// already reduced with mean_of_queries() to kMeanOfQueries to avoid recomputing the means on
// every query (a one-vector Embeddings is taken as already reduced).
std::vector<float> score_items(const Embeddings& query, const Embeddings& items, ScoreRule rule);

// All queries against all items: a queries.count x items.count row-major matrix.
std::vector<float> score_matrix(const Embeddings& queries, const Embeddings& items, ScoreRule rule);

// One query term's scores over the same items, with its weight (negative subtracts).
struct WeightedScores {
  std::vector<float> scores;
  float weight = 1.0f;
};
// sum_t w_t * scores_t / sum_t |w_t| (see Fusion above). All score vectors must have the same
// length; weights must be finite and not all zero (Error kUsage).
std::vector<float> fuse_scores(const std::vector<WeightedScores>& terms);

// A query term as written on the command line: "TEXT", "-TEXT" (weight -1), "W:TEXT" or
// "-W:TEXT" / "+W:TEXT" with W a decimal number ("2:pizza", "-0.5:cheese", "-:cheese" = -1).
// A prefix that is not a number is part of the text ("note: red", "ratio 1:2").
struct ParsedTerm {
  std::string text;
  float weight = 1.0f;
};
ParsedTerm parse_weighted_term(const std::string& term);

struct SearchHit {
  std::int64_t index = 0;  // item index into the scored items
  float score = 0.0f;
};

// The k best items by score (descending, ties by lower index), skipping the indices in
// `excluded` (e.g. the query images themselves) and scores below `threshold` (use -infinity
// for none) and NaN scores. O(n log k).
std::vector<SearchHit> top_k(const std::vector<float>& scores, std::int64_t k, float threshold,
                             const std::vector<std::int64_t>& excluded = {});

}  // namespace mmsearch
