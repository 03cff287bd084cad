// Similarity matrices over an indexed scope: building one from the store, checking and
// grouping by category.
#include "mmsearch/simmatrix.h"

#include <algorithm>
#include <numeric>

#include "mmsearch/bundle.h"
#include "mmsearch/error.h"
#include "mmsearch/index.h"
#include "mmsearch/query.h"
#include "mmsearch/search.h"

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

SimilarityMatrix build_similarity_matrix(const IndexStore& store, const Manifest& manifest,
                                         const std::string& model_id, const fs::path& scope,
                                         SimilarityKind kind) {
  const MatrixRule sides = matrix_rule(manifest, kind);
  const LoadedVectors rows = store.load_vectors(model_id, scope, sides.rows);
  if (rows.embeddings.count == 0) throw_scope_not_indexed(store, scope, model_id);
  const bool same_sides = sides.rows == sides.cols;
  const LoadedVectors cols = same_sides ? rows : store.load_vectors(model_id, scope, sides.cols);
  if (cols.embeddings.count == 0) {
    throw Error(ErrorKind::kIndex, scope.string() + " has no captions indexed; " +
                                       std::string(to_string(kind)) +
                                       " needs captions (captions.csv or sidecar .txt files)");
  }
  SimilarityMatrix matrix;
  matrix.model = manifest.name;
  matrix.kind = kind;
  for (const auto& owner : rows.owners) {
    matrix.row_labels.push_back(item_label(owner, scope));
    matrix.row_categories.push_back(owner.category);
  }
  for (const auto& owner : cols.owners) {
    matrix.col_labels.push_back(item_label(owner, scope));
    matrix.col_categories.push_back(owner.category);
  }
  if (sides.rule == ScoreRule::kMeanOfQueries) {
    const Embeddings r = mean_of_queries(rows.embeddings);
    const Embeddings c = same_sides ? r : mean_of_queries(cols.embeddings);
    matrix.scores = score_matrix(r, c, sides.rule);
  } else {
    matrix.scores = score_matrix(rows.embeddings, cols.embeddings, sides.rule);
  }
  return grouped_by_category(matrix);
}

}  // namespace mmsearch
