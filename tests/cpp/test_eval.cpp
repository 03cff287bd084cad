#include <gtest/gtest.h>

#include <map>
#include <unordered_map>

#include "fresh_dir.h"
#include "mmsearch/bundle.h"
#include "mmsearch/error.h"
#include "mmsearch/eval.h"
#include "mmsearch/index.h"
#include "mmsearch/sample.h"
#include "synthetic_store.h"

namespace fs = std::filesystem;
using namespace mmsearch;

namespace {
// Three images; images 0 and 2 share the caption "a pizza". Captions: 0 -> img0, 1 -> img1,
// 2 -> img2 ("a pizza" again), 3 -> img1 (a second caption of img1).
EvalSet small_set() {
  EvalSet set;
  set.image_categories = {"pizza", "pasta", "pizza"};
  set.caption_texts = {"a pizza", "spaghetti", "a pizza", "pasta on a plate"};
  set.caption_image = {0, 1, 2, 1};
  return set;
}
}  // namespace

TEST(Recall, TextToImageCountsDuplicateCaptionsAsRelevant) {
  const EvalSet set = small_set();
  // Rows: captions, columns: images.
  const std::vector<float> scores = {
      0.1f, 0.2f, 0.9f,  // "a pizza" (of img0): img2 has the identical caption -> rank 0
      0.3f, 0.2f, 0.1f,  // "spaghetti": img1 is second -> hit at 5, not at 1
      0.9f, 0.1f, 0.2f,  // "a pizza" (of img2): img0 is relevant too -> rank 0
      0.5f, 0.4f, 0.6f,  // "pasta on a plate": img1 is third
  };
  const RecallAtK r = text_to_image_recall(scores, set);
  EXPECT_EQ(r.queries, 4);
  EXPECT_DOUBLE_EQ(r.r1, 0.5);
  EXPECT_DOUBLE_EQ(r.r5, 1.0);
  EXPECT_DOUBLE_EQ(r.r10, 1.0);
}

TEST(Recall, ImageToText) {
  const EvalSet set = small_set();
  // Rows: images, columns: captions.
  const std::vector<float> scores = {
      0.1f, 0.5f, 0.9f, 0.2f,  // img0: caption 2 is "a pizza" too -> rank 0
      0.9f, 0.1f, 0.8f, 0.3f,  // img1: best own caption (3, 0.3) behind two others -> rank 2
      0.1f, 0.2f, 0.3f, 0.4f,  // img2: its own caption 2 ranks second -> rank 1
  };
  const RecallAtK r = image_to_text_recall(scores, set);
  EXPECT_EQ(r.queries, 3);
  EXPECT_NEAR(r.r1, 1.0 / 3, 1e-12);
  EXPECT_DOUBLE_EQ(r.r5, 1.0);
}

TEST(Recall, TiesGoAgainstTheModelAndRecallAtTenNeedsTenDistractors) {
  EvalSet set;
  for (int i = 0; i < 12; ++i) {
    set.image_categories.push_back("c");
    set.caption_texts.push_back("caption " + std::to_string(i));
    set.caption_image.push_back(i);
  }
  // Constant scores: every relevant image ties with 11 others, so it ranks 11th.
  const std::vector<float> flat(12 * 12, 0.5f);
  const RecallAtK r = text_to_image_recall(flat, set);
  EXPECT_EQ(r.r1, 0.0);
  EXPECT_EQ(r.r5, 0.0);
  EXPECT_EQ(r.r10, 0.0);
  // A perfect diagonal gets 1 everywhere.
  std::vector<float> diagonal(12 * 12, 0.0f);
  for (int i = 0; i < 12; ++i) diagonal[i * 12 + i] = 1.0f;
  EXPECT_EQ(text_to_image_recall(diagonal, set).r1, 1.0);
  EXPECT_EQ(image_to_text_recall(diagonal, set).r1, 1.0);
  // Relevant at rank 7 (0-based 6): only R@10.
  std::vector<float> seventh(12 * 12, 0.0f);
  for (int j = 0; j < 12; ++j) {
    for (int i = 0; i < 12; ++i) seventh[j * 12 + i] = i == j ? 0.5f : (i < 7 ? 0.9f : 0.1f);
  }
  const RecallAtK s = text_to_image_recall(seventh, set);
  EXPECT_LT(s.r5, 1.0);
  EXPECT_EQ(s.r10, 1.0);
}

TEST(CategoryPrecision, ExcludesTheQueryItself) {
  EvalSet set;
  set.image_categories = {"a", "a", "a", "b", "b", "b", "b", "b", "b", ""};
  // Every image is most similar to itself; then same-category images; then the rest.
  const std::size_t n = set.image_categories.size();
  std::vector<float> scores(n * n);
  for (std::size_t q = 0; q < n; ++q) {
    for (std::size_t i = 0; i < n; ++i) {
      scores[q * n + i] =
          q == i ? 1.0f : (set.image_categories[q] == set.image_categories[i] ? 0.8f : 0.2f);
    }
  }
  const CategoryPrecision p = category_precision_at_k(scores, set, 5);
  EXPECT_EQ(p.queries, 9);  // the uncategorised image asks nothing
  // "a" images have 2 same-category others -> 2/5; "b" images have 5 -> 5/5.
  EXPECT_NEAR(p.precision, (3 * 0.4 + 6 * 1.0) / 9, 1e-12);
  // If self-matches were counted, "a" would get 3/5.
  const CategoryPrecision p1 = category_precision_at_k(scores, set, 1);
  EXPECT_DOUBLE_EQ(p1.precision, 1.0);
}

TEST(CategoryPrecision, TiesAndSmallSets) {
  EvalSet set;
  set.image_categories = {"a", "a", "b"};
  const std::vector<float> flat(9, 0.3f);
  // k=1 with all ties: the other-category image ranks first for image 0 and 1.
  const CategoryPrecision p = category_precision_at_k(flat, set, 1);
  EXPECT_DOUBLE_EQ(p.precision, 0.0);
  // k larger than the set: the denominator is the number of other images (2).
  const CategoryPrecision all = category_precision_at_k(flat, set, 5);
  EXPECT_NEAR(all.precision, (0.5 + 0.5 + 0.0) / 3, 1e-12);
}

TEST(Eval, RejectsInconsistentSizes) {
  EvalSet set = small_set();
  EXPECT_THROW(text_to_image_recall(std::vector<float>(5), set), Error);
  set.caption_image[0] = 7;
  EXPECT_THROW(text_to_image_recall(std::vector<float>(12), set), Error);
  EXPECT_THROW(category_precision_at_k(std::vector<float>(9), small_set(), 0), Error);
}

// ---------------------------------------------------------------------------------------------
// evaluate_stored: streamed over the stored vectors, optionally on a sample of queries.

namespace {

Manifest blip2_manifest() {
  Manifest m;
  m.name = "synthetic-blip2";
  m.family = Family::kBlip2;
  m.similarity_text_image = ScoreRule::kMaxOverQueries;
  m.similarity_image_image = ScoreRule::kMeanOfQueries;
  return m;
}

test_support::SyntheticStore eval_spec() {
  test_support::SyntheticStore spec;
  spec.files = 40;
  spec.categories = 3;
  spec.image_rows = 32;
  spec.dim = 16;
  spec.captions_per_file = 2;
  spec.shared_caption_every = 5;  // duplicate captions: several relevant images
  return spec;
}

struct Loaded {
  EvalSet set;
  LoadedVectors images, captions;
};

// The evaluation set and vectors as evaluate_stored sees them, for the matrix-based reference.
Loaded load(const IndexStore& store, const std::string& scope) {
  Loaded l;
  l.images = store.load_vectors("m", scope, VectorKind::kImageProj);
  l.captions = store.load_vectors("m", scope, VectorKind::kTextProj);
  std::unordered_map<std::int64_t, std::int64_t> image_of_file;
  for (std::size_t i = 0; i < l.images.owners.size(); ++i) {
    image_of_file[l.images.owners[i].file_id] = static_cast<std::int64_t>(i);
    l.set.image_categories.push_back(l.images.owners[i].category);
  }
  for (const auto& o : l.captions.owners) {
    l.set.caption_texts.push_back(o.caption);
    l.set.caption_image.push_back(image_of_file.at(o.file_id));
  }
  return l;
}

}  // namespace

TEST(EvaluateStored, StreamedEqualsTheFullMatrices) {
  const auto spec = eval_spec();
  const fs::path dir = fresh_test_dir("eval", "streamed");
  IndexStore store(dir / "index.sqlite3");
  test_support::fill_synthetic_store(store, "m", spec);
  const Manifest manifest = blip2_manifest();
  const Loaded l = load(store, spec.root);

  const EvalReport report = evaluate_stored(store, manifest, "m", spec.root);
  EXPECT_EQ(report.images, 40);
  EXPECT_EQ(report.captions, 80);
  EXPECT_FALSE(report.sampled);
  EXPECT_EQ(report.caption_queries, 80);
  EXPECT_EQ(report.image_queries, 40);

  const auto t2i = text_to_image_recall(
      score_matrix(l.captions.embeddings, l.images.embeddings, ScoreRule::kMaxOverQueries), l.set);
  const auto i2t = image_to_text_recall(
      score_matrix(l.images.embeddings, l.captions.embeddings, ScoreRule::kMaxOverQueries), l.set);
  const Embeddings means = mean_of_queries(l.images.embeddings);
  const auto i2i =
      category_precision_at_k(score_matrix(means, means, ScoreRule::kMeanOfQueries), l.set, 5);
  EXPECT_EQ(report.text_to_image.queries, t2i.queries);
  EXPECT_DOUBLE_EQ(report.text_to_image.r1, t2i.r1);
  EXPECT_DOUBLE_EQ(report.text_to_image.r5, t2i.r5);
  EXPECT_DOUBLE_EQ(report.text_to_image.r10, t2i.r10);
  EXPECT_EQ(report.image_to_text.queries, i2t.queries);
  EXPECT_DOUBLE_EQ(report.image_to_text.r1, i2t.r1);
  EXPECT_DOUBLE_EQ(report.image_to_text.r5, i2t.r5);
  EXPECT_EQ(report.image_to_image.queries, i2i.queries);
  EXPECT_DOUBLE_EQ(report.image_to_image.precision, i2i.precision);
  // The synthetic categories are separable: the measures are far from chance, so an error in
  // which rows are scored would show.
  EXPECT_GT(report.image_to_image.precision, 0.8);
  EXPECT_GT(report.text_to_image.r10, report.text_to_image.r1);
}

TEST(EvaluateStored, SampleOfQueriesIsSeededStratifiedAndReported) {
  const auto spec = eval_spec();
  const fs::path dir = fresh_test_dir("eval", "sample");
  IndexStore store(dir / "index.sqlite3");
  test_support::fill_synthetic_store(store, "m", spec);
  const Manifest manifest = blip2_manifest();
  const Loaded l = load(store, spec.root);

  const EvalReport report = evaluate_stored(store, manifest, "m", spec.root, {10, 3});
  EXPECT_TRUE(report.sampled);
  EXPECT_EQ(report.seed, 3u);
  EXPECT_EQ(report.caption_queries, 10);
  EXPECT_EQ(report.image_queries, 10);
  EXPECT_EQ(report.text_to_image.queries, 10);
  EXPECT_EQ(report.image_to_text.queries, 10);  // every image has captions
  EXPECT_EQ(report.image_to_image.queries, 10);
  EXPECT_EQ(report.images, 40);  // the candidates stay whole
  EXPECT_EQ(report.captions, 80);

  // The same queries stratified_sample picks (keys: the file path), scored against everything.
  std::vector<std::string> caption_categories, caption_keys, image_keys;
  for (std::size_t j = 0; j < l.captions.owners.size(); ++j) {
    caption_categories.push_back(l.set.image_categories[l.set.caption_image[j]]);
    caption_keys.push_back(l.captions.owners[j].path);
  }
  for (const auto& o : l.images.owners) image_keys.push_back(o.path);
  const auto caption_rows = stratified_sample(caption_categories, caption_keys, 10, 3);
  const auto image_rows = stratified_sample(l.set.image_categories, image_keys, 10, 3);
  // Reference, by hand from the full matrices: the measures over just those query rows, with
  // every image and caption as a candidate (relevant: an identical caption text).
  const auto t2i_all =
      score_matrix(l.captions.embeddings, l.images.embeddings, ScoreRule::kMaxOverQueries);
  std::int64_t hits1 = 0, hits10 = 0;
  for (std::size_t j : caption_rows) {
    // Images relevant to caption j: those owning a caption with the identical text.
    std::vector<char> relevant(40, 0);
    for (std::size_t k = 0; k < l.set.caption_texts.size(); ++k) {
      if (l.set.caption_texts[k] == l.set.caption_texts[j]) relevant[l.set.caption_image[k]] = 1;
    }
    float best = -INFINITY;
    for (int i = 0; i < 40; ++i)
      if (relevant[i]) best = std::max(best, t2i_all[j * 40 + i]);
    int rank = 0;
    for (int i = 0; i < 40; ++i) rank += !relevant[i] && t2i_all[j * 40 + i] >= best;
    hits1 += rank < 1;
    hits10 += rank < 10;
  }
  EXPECT_DOUBLE_EQ(report.text_to_image.r1, hits1 / 10.0);
  EXPECT_DOUBLE_EQ(report.text_to_image.r10, hits10 / 10.0);
  // image->image precision over the sampled images: the full matrix's rows at those images.
  const Embeddings means = mean_of_queries(l.images.embeddings);
  const auto i2i_all = score_matrix(means, means, ScoreRule::kMeanOfQueries);
  double sum = 0.0;
  for (std::size_t q : image_rows) {
    std::vector<std::pair<float, bool>> others;
    for (std::size_t i = 0; i < 40; ++i) {
      if (i == q) continue;
      others.emplace_back(i2i_all[q * 40 + i],
                          l.set.image_categories[i] == l.set.image_categories[q]);
    }
    std::stable_sort(others.begin(), others.end(), [](const auto& a, const auto& b) {
      if (a.first != b.first) return a.first > b.first;
      return !a.second && b.second;  // ties go against the model
    });
    int hits = 0;
    for (int r = 0; r < 5; ++r) hits += others[r].second;
    sum += hits / 5.0;
  }
  EXPECT_DOUBLE_EQ(report.image_to_image.precision, sum / 10.0);

  // Stratified: the sampled images keep the categories' proportions (largest remainder).
  std::map<std::string, int> sampled, scope;
  for (std::size_t i : image_rows) ++sampled[l.set.image_categories[i]];
  for (const auto& c : l.set.image_categories) ++scope[c];
  for (const auto& [c, n] : scope) EXPECT_LT(std::abs(sampled[c] - n * 10.0 / 40), 1.0) << c;

  // Deterministic per seed; a sample as large as the scope is no sample.
  const EvalReport again = evaluate_stored(store, manifest, "m", spec.root, {10, 3});
  EXPECT_DOUBLE_EQ(again.text_to_image.r1, report.text_to_image.r1);
  EXPECT_DOUBLE_EQ(again.image_to_image.precision, report.image_to_image.precision);
  const EvalReport whole = evaluate_stored(store, manifest, "m", spec.root, {1000, 3});
  EXPECT_FALSE(whole.sampled);
  EXPECT_EQ(whole.caption_queries, 80);
  EXPECT_THROW(evaluate_stored(store, manifest, "m", spec.root, {-2, 0}), Error);
}
