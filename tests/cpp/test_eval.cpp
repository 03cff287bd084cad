#include <gtest/gtest.h>

#include "mmsearch/error.h"
#include "mmsearch/eval.h"

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
