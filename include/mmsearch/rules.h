// The vocabulary of mmsearch as types, and every rule that depends on a model's family, in one
// place: which vectors a family stores, which vectors meet for each pair of kinds, and by which
// score rule. Everything else asks here instead of comparing strings.
//
// Which vectors meet (E = projection dim, D = hidden dim; text_image / image_image come from
// the manifest's `similarity` and default by family):
//   query text  vs image      : text_proj CLS  . image_proj         text_image
//   query image vs image      : image_proj     . image_proj         image_image
//   query text  vs text       : text_proj CLS  . text_proj CLS      cls
//   query image vs text       : image_proj     . text_proj CLS      text_image
//   query image vs multimodal : image summary  . multimodal summary cls (D, normalised)
//   query text  vs multimodal : text CLS (D, normalised) . multimodal summary cls
// Stored per family (see summary_rows()):
//   BLIP : image_proj 1 row (CLS), summaries = the CLS row.
//   BLIP-2: image_proj 32 rows (one per Q-Former query), summaries = the normalised mean of the
//   query outputs.
#pragma once

#include <string>
#include <string_view>

namespace mmsearch {

struct Manifest;

// A vision-language model family (the manifest's `family`); translation bundles are kMarian.
enum class Family { kBlip, kBlip2, kMarian };
const char* to_string(Family family);  // "blip", "blip2", "marian"
// Inverse of to_string; throws Error(kModel) listing the valid names.
Family family_from_string(std::string_view name);

// How two items of vectors are compared (see search.h for the arithmetic and the argument).
enum class ScoreRule { kCls, kMaxOverQueries, kMeanOfQueries };
// "cls", "max-over-queries", "mean-of-queries" (the manifest's spelling).
const char* to_string(ScoreRule rule);
// Inverse of to_string; throws Error(kModel) listing the valid names (a manifest value).
ScoreRule score_rule_from_string(std::string_view name);

// What the store keeps per kind of vector. Per image: kImageProj (projected, L2-normalised:
// BLIP 1 CLS row, BLIP-2 32 query rows) and kImageEmbed (unprojected summary). Per caption:
// kTextProj (projected text CLS) and kMultimodal (image + caption, unprojected summary).
enum class VectorKind { kImageProj, kImageEmbed, kTextProj, kMultimodal };
// "image_proj", "image_embed", "text_proj", "multimodal".
const char* to_string(VectorKind kind);
// Inverse of to_string; throws Error(kUsage) listing the valid names.
VectorKind vector_kind_from_string(std::string_view name);
// True for kTextProj and kMultimodal, which are stored per caption rather than per image.
bool is_caption_kind(VectorKind kind);

// The five similarity matrices of the study: rows kind - columns kind.
enum class SimilarityKind {
  kImageImage,
  kImageText,
  kImageMultimodal,
  kMultimodalMultimodal,
  kTextText,
};
// "image-image", "image-text", "image-multimodal", "multimodal-multimodal", "text-text".
const char* to_string(SimilarityKind kind);
// Inverse of to_string; throws Error(kUsage) listing the valid names.
SimilarityKind similarity_kind_from_string(std::string_view name);

// Which stored vectors a query searches.
enum class Against { kImage, kText, kMultimodal };
const char* to_string(Against against);  // "image", "text", "multimodal"
// Inverse of to_string; throws Error(kUsage) listing the valid names.
Against against_from_string(std::string_view name);
// The stored kind a query reads for `against` (kImageProj, kTextProj or kMultimodal).
VectorKind stored_kind_for(Against against);

// The rows, the columns and the rule of one similarity matrix for a model.
struct MatrixRule {
  VectorKind rows = VectorKind::kImageProj;
  VectorKind cols = VectorKind::kImageProj;
  ScoreRule rule = ScoreRule::kCls;
};
MatrixRule matrix_rule(const Manifest& manifest, SimilarityKind kind);

// The rule that scores a query of one side (an image or a text query) against stored `items`.
// Text queries are scored with their projected CLS (kImageProj, kTextProj) or their normalised
// unprojected CLS (kMultimodal); image queries with their projections or their summary.
ScoreRule query_rule(const Manifest& manifest, bool text_query, VectorKind items);

// Rows of image_proj a family keeps per image: 1 (BLIP CLS) or the query count (BLIP-2).
int image_proj_rows(const Manifest& manifest);
// How an unprojected [tokens, D] output becomes its one stored summary row.
enum class SummaryRule { kFirstRow, kMeanOfRows };
SummaryRule summary_rule(const Manifest& manifest);

}  // namespace mmsearch
