#include "mmsearch/rules.h"

#include <initializer_list>

#include "mmsearch/bundle.h"
#include "mmsearch/error.h"

namespace mmsearch {
namespace {

// Looks `name` up among `values` by their to_string spelling; throws `kind` listing them.
template <typename Enum>
Enum from_string(std::string_view name, std::initializer_list<Enum> values, ErrorKind kind,
                 const char* what) {
  std::string valid;
  for (Enum value : values) {
    if (name == to_string(value)) return value;
    valid += (valid.empty() ? "" : ", ") + std::string(to_string(value));
  }
  throw Error(kind, "unknown " + std::string(what) + " '" + std::string(name) + "' (expected " +
                        valid + ")");
}

}  // namespace

const char* to_string(Family family) {
  switch (family) {
    case Family::kBlip:
      return "blip";
    case Family::kBlip2:
      return "blip2";
    case Family::kMarian:
      return "marian";
  }
  return "?";
}

Family family_from_string(std::string_view name) {
  return from_string(name, {Family::kBlip, Family::kBlip2, Family::kMarian}, ErrorKind::kModel,
                     "model family");
}

const char* to_string(ScoreRule rule) {
  switch (rule) {
    case ScoreRule::kCls:
      return "cls";
    case ScoreRule::kMaxOverQueries:
      return "max-over-queries";
    case ScoreRule::kMeanOfQueries:
      return "mean-of-queries";
  }
  return "?";
}

ScoreRule score_rule_from_string(std::string_view name) {
  return from_string(name, {ScoreRule::kCls, ScoreRule::kMaxOverQueries, ScoreRule::kMeanOfQueries},
                     ErrorKind::kModel, "score rule");
}

const char* to_string(VectorKind kind) {
  switch (kind) {
    case VectorKind::kImageProj:
      return "image_proj";
    case VectorKind::kImageEmbed:
      return "image_embed";
    case VectorKind::kTextProj:
      return "text_proj";
    case VectorKind::kMultimodal:
      return "multimodal";
  }
  return "?";
}

VectorKind vector_kind_from_string(std::string_view name) {
  return from_string(name,
                     {VectorKind::kImageProj, VectorKind::kImageEmbed, VectorKind::kTextProj,
                      VectorKind::kMultimodal},
                     ErrorKind::kUsage, "vector kind");
}

bool is_caption_kind(VectorKind kind) {
  return kind == VectorKind::kTextProj || kind == VectorKind::kMultimodal;
}

const char* to_string(SimilarityKind kind) {
  switch (kind) {
    case SimilarityKind::kImageImage:
      return "image-image";
    case SimilarityKind::kImageText:
      return "image-text";
    case SimilarityKind::kImageMultimodal:
      return "image-multimodal";
    case SimilarityKind::kMultimodalMultimodal:
      return "multimodal-multimodal";
    case SimilarityKind::kTextText:
      return "text-text";
  }
  return "?";
}

SimilarityKind similarity_kind_from_string(std::string_view name) {
  return from_string(
      name,
      {SimilarityKind::kImageImage, SimilarityKind::kImageText, SimilarityKind::kImageMultimodal,
       SimilarityKind::kMultimodalMultimodal, SimilarityKind::kTextText},
      ErrorKind::kUsage, "matrix kind");
}

const char* to_string(Against against) {
  switch (against) {
    case Against::kImage:
      return "image";
    case Against::kText:
      return "text";
    case Against::kMultimodal:
      return "multimodal";
  }
  return "?";
}

Against against_from_string(std::string_view name) {
  return from_string(name, {Against::kImage, Against::kText, Against::kMultimodal},
                     ErrorKind::kUsage, "search target");
}

VectorKind stored_kind_for(Against against) {
  switch (against) {
    case Against::kImage:
      return VectorKind::kImageProj;
    case Against::kText:
      return VectorKind::kTextProj;
    case Against::kMultimodal:
      return VectorKind::kMultimodal;
  }
  return VectorKind::kImageProj;
}

MatrixRule matrix_rule(const Manifest& manifest, SimilarityKind kind) {
  switch (kind) {
    case SimilarityKind::kImageImage:
      return {VectorKind::kImageProj, VectorKind::kImageProj, manifest.similarity_image_image};
    case SimilarityKind::kImageText:
      return {VectorKind::kImageProj, VectorKind::kTextProj, manifest.similarity_text_image};
    case SimilarityKind::kImageMultimodal:
      return {VectorKind::kImageEmbed, VectorKind::kMultimodal, ScoreRule::kCls};
    case SimilarityKind::kMultimodalMultimodal:
      return {VectorKind::kMultimodal, VectorKind::kMultimodal, ScoreRule::kCls};
    case SimilarityKind::kTextText:
      return {VectorKind::kTextProj, VectorKind::kTextProj, ScoreRule::kCls};
  }
  return {};
}

ScoreRule query_rule(const Manifest& manifest, bool text_query, VectorKind items) {
  switch (items) {
    case VectorKind::kImageProj:
      return text_query ? manifest.similarity_text_image : manifest.similarity_image_image;
    case VectorKind::kTextProj:
      // A text against caption texts is CLS . CLS; an image against them is the same pairing
      // as image-text.
      return text_query ? ScoreRule::kCls : manifest.similarity_text_image;
    case VectorKind::kImageEmbed:
    case VectorKind::kMultimodal:
      return ScoreRule::kCls;  // one normalised summary row on both sides
  }
  return ScoreRule::kCls;
}

int image_proj_rows(const Manifest& manifest) {
  return manifest.family == Family::kBlip2 ? manifest.dims.query_tokens : 1;
}

SummaryRule summary_rule(const Manifest& manifest) {
  return manifest.family == Family::kBlip2 ? SummaryRule::kMeanOfRows : SummaryRule::kFirstRow;
}

}  // namespace mmsearch
