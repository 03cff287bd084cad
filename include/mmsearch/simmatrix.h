// Similarity matrices over an indexed scope, grouped by category, and their CSV form.
// Drawing them (heatmaps) is in render.h.
//
// Usage:
//   const SimilarityMatrix m = build_similarity_matrix(store, manifest, model_id, scope, kind);
//   write_similarity_csv(m, "out.csv");
//   write_heatmap_png(m, "out.png");  // render.h
// At scale (a matrix is rows x columns numbers; 20,000 items per side is 1.6 GB of floats):
//   SimilaritySides sides = load_similarity_sides(store, manifest, model_id, scope, kind,
//                                                 {/*sample=*/500, /*seed=*/1});
//   write_similarity_csv(sides, "out.csv");  // streamed: one row of scores at a time
//
// Nothing here prints.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "mmsearch/error.h"
#include "mmsearch/rules.h"
#include "mmsearch/search.h"

namespace mmsearch {

class IndexStore;
struct Manifest;

// The most items per side a heatmap is drawn with. At 2,000 a cell is under half a pixel of
// the 900 px matrix, so the picture shows no more than a stratified sample would.
constexpr std::int64_t kHeatmapMaxItems = 2000;

struct SimilarityMatrix {
  std::string model;  // shown in the title, e.g. "blip2-pretrain"
  SimilarityKind kind = SimilarityKind::kImageImage;
  std::vector<std::string> row_labels;
  std::vector<std::string> row_categories;  // same length as row_labels (may hold "")
  std::vector<std::string> col_labels;
  std::vector<std::string> col_categories;
  std::vector<float> scores;  // row-major, row_labels.size() x col_labels.size()
  // "" for a whole scope; for a sample, what it is (see sample_note()), written into the CSV's
  // header.
  std::string note;
};

// Throws Error(kUsage) when the label, category and score counts do not agree.
void check_matrix_sizes(const SimilarityMatrix& matrix);

// Rows and columns sorted stably by category name (so items keep their order inside a
// category), scores permuted to match. Throws Error(kUsage) on inconsistent sizes.
SimilarityMatrix grouped_by_category(const SimilarityMatrix& matrix);

// --- A matrix before scoring: its two sides. ---

// The items of one side, in the matrix's order (grouped by category, stably).
struct MatrixSide {
  VectorKind kind = VectorKind::kImageProj;
  std::vector<std::string> labels;      // as in SimilarityMatrix
  std::vector<std::string> categories;  // same length
  Embeddings vectors;  // as scored: already reduced by mean_of_queries() for kMeanOfQueries
  std::int64_t scope_items = 0;  // items of this kind in the scope (more than labels: a sample)
  std::int64_t size() const { return static_cast<std::int64_t>(labels.size()); }
  bool sampled() const { return size() < scope_items; }
};

struct SimilaritySides {
  std::string model;  // the bundle's name
  SimilarityKind kind = SimilarityKind::kImageImage;
  ScoreRule rule = ScoreRule::kCls;
  MatrixSide rows;
  MatrixSide cols;
  std::uint64_t seed = 0;  // of the sample, when a side was sampled
};

struct SideSampling {
  // 0: every item. Otherwise a side with more items keeps a sample of this many, stratified by
  // category and drawn with `seed` (stratified_sample() in sample.h: proportions kept by
  // largest remainder, items chosen by a seeded hash of their file's path, so the same seed
  // gives the same sample, and an image side and a caption side pick the same files where
  // they can). A side with at most this many items is kept whole.
  std::int64_t sample = 0;
  std::uint64_t seed = 0;
};

// The scope was indexed but has no captions, which the kind needs (an Error of kind kIndex):
// `--kind all` skips such kinds, where any other failure stops the run.
class MissingCaptions : public Error {
 public:
  using Error::Error;
};

// The two sides of the matrix of one kind over the vectors `model_id` stored for `scope` (an
// index path, see normalize_index_path), scored by the manifest's rule for that kind
// (matrix_rule). Labels are paths relative to the scope (so red/0.png and blue/0.png stay
// apart), with " #N" for the N-th caption of a file. Memory: the sides' vectors and labels,
// O(rows + columns). Throws Error(kIndex) when the scope holds no vectors of the model,
// MissingCaptions when it holds no captions for a kind that needs them; Error(kUsage) for a
// negative sample size.
SimilaritySides load_similarity_sides(const IndexStore& store, const Manifest& manifest,
                                      const std::string& model_id,
                                      const std::filesystem::path& scope, SimilarityKind kind,
                                      const SideSampling& sampling = {});

// "" when neither side was sampled, else e.g. "sample of 500 of 20000 images x 500 of 20000
// images, stratified by category, seed 1" (a side kept whole reads "all 12 captions").
std::string sample_note(const SimilaritySides& sides);

// The whole matrix in memory (rows x columns floats: for pictures and small matrices), grouped
// by category, with note = sample_note(sides).
SimilarityMatrix compute_similarity_matrix(const SimilaritySides& sides);

// load_similarity_sides() then compute_similarity_matrix() over every item of the scope.
SimilarityMatrix build_similarity_matrix(const IndexStore& store, const Manifest& manifest,
                                         const std::string& model_id,
                                         const std::filesystem::path& scope, SimilarityKind kind);

// --- CSV. ---

// CSV (RFC 4180, through libcsv): a header row "label,<column labels...>", then one row per
// matrix row: its label and its scores (%.6f). Labels are always quoted, quotes doubled, so
// commas, quotes, line breaks and any UTF-8 survive. For a sample, the header's first field
// says so: "label (sample of ...)" (see sample_note()). Written in the matrix's order (grouped
// by category when it came from build_similarity_matrix). Throws Error(kInput) when the file
// cannot be written.
void write_similarity_csv(const SimilarityMatrix& matrix, const std::filesystem::path& path);

// The same file from the sides, streamed: each row of scores is computed (score_items against
// the column side), written and dropped before the next, so memory is O(rows + columns) and a
// 100k x 100k CSV (about 90 GB of text) is written as easily as a small one. The bytes are those
// write_similarity_csv(compute_similarity_matrix(sides), path) writes.
void write_similarity_csv(const SimilaritySides& sides, const std::filesystem::path& path);

}  // namespace mmsearch
