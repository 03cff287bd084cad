// Similarity matrices over an indexed scope: loading their sides from the store (whole or
// sampled), scoring them, checking and grouping by category.
#include "mmsearch/simmatrix.h"

#include <algorithm>
#include <numeric>

#include "mmsearch/bundle.h"
#include "mmsearch/error.h"
#include "mmsearch/index.h"
#include "mmsearch/query.h"
#include "mmsearch/sample.h"
#include "mmsearch/score_rows.h"

namespace fs = std::filesystem;

namespace mmsearch {
namespace {

std::vector<std::size_t> stable_order(const std::vector<std::string>& categories) {
  std::vector<std::size_t> order(categories.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return categories[a] < categories[b]; });
  return order;
}

// Labels are paths relative to the scope, so that red/0.png and blue/0.png stay apart.
std::string item_label(const VectorOwner& owner, const fs::path& scope) {
  std::string label = fs::path(owner.path).lexically_relative(scope).string();
  if (owner.caption_index > 0) label += " #" + std::to_string(owner.caption_index + 1);
  return label;
}

// The side's items (all, or the sample), grouped by category, reduced for kMeanOfQueries.
MatrixSide make_side(LoadedVectors loaded, VectorKind kind, ScoreRule rule, const fs::path& scope,
                     const SideSampling& sampling) {
  MatrixSide side;
  side.kind = kind;
  side.scope_items = loaded.embeddings.count;
  std::vector<std::string> categories;
  categories.reserve(loaded.owners.size());
  for (const VectorOwner& owner : loaded.owners) categories.push_back(owner.category);

  std::vector<std::size_t> kept;
  if (sampling.sample > 0 && side.scope_items > sampling.sample) {
    std::vector<std::string> keys;
    keys.reserve(loaded.owners.size());
    for (const VectorOwner& owner : loaded.owners) keys.push_back(owner.path);
    kept = stratified_sample(categories, keys, static_cast<std::size_t>(sampling.sample),
                             sampling.seed);
  } else {
    kept.resize(loaded.owners.size());
    std::iota(kept.begin(), kept.end(), 0);
  }
  // Group the kept items by category, keeping their order inside a category.
  std::vector<std::string> kept_categories;
  kept_categories.reserve(kept.size());
  for (std::size_t i : kept) kept_categories.push_back(categories[i]);
  std::vector<std::size_t> order = stable_order(kept_categories);
  for (std::size_t& o : order) o = kept[o];

  for (std::size_t i : order) {
    side.labels.push_back(item_label(loaded.owners[i], scope));
    side.categories.push_back(loaded.owners[i].category);
  }
  // Reduce before gathering: the means are 1/vectors_per_item of the data.
  Embeddings vectors = rule == ScoreRule::kMeanOfQueries ? mean_of_queries(loaded.embeddings)
                                                         : std::move(loaded.embeddings);
  loaded.owners.clear();
  bool identity = order.size() == static_cast<std::size_t>(vectors.count);
  for (std::size_t r = 0; identity && r < order.size(); ++r) identity = order[r] == r;
  if (identity) {
    side.vectors = std::move(vectors);
    return side;
  }
  side.vectors.count = static_cast<std::int64_t>(order.size());
  side.vectors.vectors_per_item = vectors.vectors_per_item;
  side.vectors.dim = vectors.dim;
  const std::size_t item_size = static_cast<std::size_t>(vectors.vectors_per_item) * vectors.dim;
  side.vectors.values.resize(order.size() * item_size);
  for (std::size_t r = 0; r < order.size(); ++r) {
    const float* from = vectors.item(static_cast<std::int64_t>(order[r]));
    std::copy(from, from + item_size, side.vectors.values.begin() + r * item_size);
  }
  return side;
}

const char* side_noun(VectorKind kind) {
  switch (kind) {
    case VectorKind::kImageProj:
    case VectorKind::kImageEmbed:
      return "images";
    case VectorKind::kTextProj:
      return "captions";
    case VectorKind::kMultimodal:
      return "multimodal items";
  }
  return "items";
}

std::string side_note(const MatrixSide& side) {
  if (!side.sampled())
    return "all " + std::to_string(side.scope_items) + " " + side_noun(side.kind);
  return std::to_string(side.size()) + " of " + std::to_string(side.scope_items) + " " +
         side_noun(side.kind);
}

}  // namespace

void check_matrix_sizes(const SimilarityMatrix& m) {
  if (m.row_categories.size() != m.row_labels.size() ||
      m.col_categories.size() != m.col_labels.size() ||
      m.scores.size() != m.row_labels.size() * m.col_labels.size()) {
    throw Error(ErrorKind::kUsage,
                "similarity matrix: " + std::to_string(m.row_labels.size()) + " row labels, " +
                    std::to_string(m.row_categories.size()) + " row categories, " +
                    std::to_string(m.col_labels.size()) + " column labels, " +
                    std::to_string(m.col_categories.size()) + " column categories and " +
                    std::to_string(m.scores.size()) + " scores do not agree");
  }
}

SimilarityMatrix grouped_by_category(const SimilarityMatrix& matrix) {
  check_matrix_sizes(matrix);
  const auto rows = stable_order(matrix.row_categories);
  const auto cols = stable_order(matrix.col_categories);
  SimilarityMatrix out;
  out.model = matrix.model;
  out.kind = matrix.kind;
  out.note = matrix.note;
  const std::size_t m = matrix.col_labels.size();
  out.scores.resize(matrix.scores.size());
  for (std::size_t r = 0; r < rows.size(); ++r) {
    out.row_labels.push_back(matrix.row_labels[rows[r]]);
    out.row_categories.push_back(matrix.row_categories[rows[r]]);
    for (std::size_t c = 0; c < m; ++c)
      out.scores[r * m + c] = matrix.scores[rows[r] * m + cols[c]];
  }
  for (std::size_t c = 0; c < m; ++c) {
    out.col_labels.push_back(matrix.col_labels[cols[c]]);
    out.col_categories.push_back(matrix.col_categories[cols[c]]);
  }
  return out;
}

SimilaritySides load_similarity_sides(const IndexStore& store, const Manifest& manifest,
                                      const std::string& model_id, const fs::path& scope,
                                      SimilarityKind kind, const SideSampling& sampling) {
  if (sampling.sample < 0) {
    throw Error(ErrorKind::kUsage,
                "a sample of " + std::to_string(sampling.sample) + " items: give --sample N >= 1");
  }
  const MatrixRule rule = matrix_rule(manifest, kind);
  auto no_captions = [&] {
    throw MissingCaptions(ErrorKind::kIndex,
                          scope.string() + " has no captions indexed; " +
                              std::string(to_string(kind)) +
                              " needs captions (captions.csv or sidecar .txt files)");
  };
  LoadedVectors rows = store.load_vectors(model_id, scope, rule.rows);
  if (rows.embeddings.count == 0) {
    // text-text and multimodal-multimodal have captions on both sides: an indexed folder
    // without captions is not a folder that was never indexed.
    const std::vector<std::string> present = store.model_ids_in_scope(scope);
    if (is_caption_kind(rule.rows) &&
        std::find(present.begin(), present.end(), model_id) != present.end()) {
      no_captions();
    }
    throw_scope_not_indexed(store, scope, model_id);
  }
  const bool same_sides = rule.rows == rule.cols;
  LoadedVectors cols =
      same_sides ? LoadedVectors{} : store.load_vectors(model_id, scope, rule.cols);
  if (!same_sides && cols.embeddings.count == 0) no_captions();
  SimilaritySides sides;
  sides.model = manifest.name;
  sides.kind = kind;
  sides.rule = rule.rule;
  sides.seed = sampling.seed;
  sides.rows = make_side(std::move(rows), rule.rows, rule.rule, scope, sampling);
  sides.cols =
      same_sides ? sides.rows : make_side(std::move(cols), rule.cols, rule.rule, scope, sampling);
  return sides;
}

std::string sample_note(const SimilaritySides& sides) {
  if (!sides.rows.sampled() && !sides.cols.sampled()) return "";
  return "sample of " + side_note(sides.rows) + " x " + side_note(sides.cols) +
         ", stratified by category, seed " + std::to_string(sides.seed);
}

SimilarityMatrix compute_similarity_matrix(const SimilaritySides& sides) {
  SimilarityMatrix matrix;
  matrix.model = sides.model;
  matrix.kind = sides.kind;
  matrix.note = sample_note(sides);
  matrix.row_labels = sides.rows.labels;
  matrix.row_categories = sides.rows.categories;
  matrix.col_labels = sides.cols.labels;
  matrix.col_categories = sides.cols.categories;
  const std::size_t m = sides.cols.labels.size();
  matrix.scores.resize(sides.rows.labels.size() * m);
  for_each_score_row(sides.rows.vectors, sides.cols.vectors, sides.rule, nullptr,
                     [&](std::int64_t r, const std::vector<float>& row) {
                       std::copy(row.begin(), row.end(), matrix.scores.begin() + r * m);
                     });
  return matrix;
}

SimilarityMatrix build_similarity_matrix(const IndexStore& store, const Manifest& manifest,
                                         const std::string& model_id, const fs::path& scope,
                                         SimilarityKind kind) {
  return compute_similarity_matrix(load_similarity_sides(store, manifest, model_id, scope, kind));
}

}  // namespace mmsearch
