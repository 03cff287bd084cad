// Retrieval metrics for `mmsearch eval`: text->image and image->text Recall@1/5/10 and
// image->image category precision@5, from score matrices (see search.h score_matrix()).
//
// Relevance: an image is relevant to a caption when one of the image's own captions is
// identical to it (byte-for-byte). So when two photos share a caption, either photo answers
// that caption, and for image->text every caption identical to one of the image's own counts.
//
// Ties: a relevant item counts as ranked at k only if fewer than k non-relevant items score
// at least as high (ties go against the model). A model that gives every pair the same score
// therefore gets recall near 0, not the lucky recall an index-order tie-break would give.
//
// Throws Error(kUsage) on inconsistent sizes. Nothing here prints.
// evaluate_stored() puts it together: the stored vectors of a folder, the model's score rules,
// and the three measures, as one report. It scores one query at a time and keeps only counts,
// never a captions x images matrix, so its memory is O(images + captions) (the vectors) however
// large the folder; its time is still (captions + 2 images) x (images or captions) scores,
// which --sample cuts by asking fewer queries.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace mmsearch {

class IndexStore;  // index.h
struct Manifest;   // bundle.h

// A captioned, categorised evaluation set. Caption j belongs to image caption_image[j].
struct EvalSet {
  std::vector<std::string> image_categories;  // one per image ("" = none)
  std::vector<std::string> caption_texts;     // one per caption (every caption is a query)
  std::vector<std::int64_t> caption_image;    // one per caption: index into images
};

struct RecallAtK {
  double r1 = 0.0;
  double r5 = 0.0;
  double r10 = 0.0;
  std::int64_t queries = 0;  // queries that had at least one relevant item
};

// scores: captions x images, row-major (caption j's score for image i at [j * images + i]).
// Queries: every caption. Returns the fraction of captions with a relevant image in the top K.
RecallAtK text_to_image_recall(const std::vector<float>& scores, const EvalSet& set);

// scores: images x captions, row-major. Queries: every image that has a caption.
RecallAtK image_to_text_recall(const std::vector<float>& scores, const EvalSet& set);

// scores: images x images, row-major. For each image with a non-empty category, the fraction
// of its k best other images (the image itself never counts) that share its category, averaged
// over those images. When fewer than k other images exist, the denominator is their number.
// As for recall, ties go against the model: among equal scores, other-category images rank
// first.
struct CategoryPrecision {
  double precision = 0.0;
  std::int64_t queries = 0;
};
CategoryPrecision category_precision_at_k(const std::vector<float>& scores, const EvalSet& set,
                                          int k = 5);

struct EvalOptions {
  // 0: every caption and every image is a query. Otherwise at most this many caption queries
  // (text->image) and this many image queries (image->text, image->image), each a sample
  // stratified by category (a caption's is its image's) and drawn with `seed`, see
  // stratified_sample() in sample.h. The candidates are always every image and caption, so a
  // sample estimates the same recall, with fewer queries.
  std::int64_t sample = 0;
  std::uint64_t seed = 0;
};

// What `mmsearch eval` reports for one model on one folder.
struct EvalReport {
  std::string model;     // bundle name
  std::string model_id;  // the identity the vectors are stored under
  std::int64_t images = 0;
  std::int64_t captions = 0;
  RecallAtK text_to_image;
  RecallAtK image_to_text;
  CategoryPrecision image_to_image;  // precision@5
  // The queries asked: every caption and image, or the sample's (then sampled is true).
  bool sampled = false;
  std::uint64_t seed = 0;
  std::int64_t caption_queries = 0;
  std::int64_t image_queries = 0;
};

// Measures `manifest`'s model on the vectors stored for `scope` under `model_id` (index the
// folder first), streamed (see above). The numbers are those of the three functions above on
// the full score matrices (for the same queries). Throws Error(kInput) when the scope has no
// images or no captions stored, Error(kUsage) for a negative sample size.
EvalReport evaluate_stored(const IndexStore& store, const Manifest& manifest,
                           const std::string& model_id, const std::filesystem::path& scope,
                           const EvalOptions& options = {});

}  // namespace mmsearch
