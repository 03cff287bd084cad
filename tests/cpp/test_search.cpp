#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>

#include "mmsearch/error.h"
#include "mmsearch/search.h"
#include "random_embeddings.h"
#include "shared_data.h"

namespace fs = std::filesystem;
using namespace mmsearch;
using mmsearch::test_support::random_embeddings;

namespace {

double dot(const float* a, const float* b, int n) {
  double s = 0;
  for (int i = 0; i < n; ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

// Minimal .npy reader: little-endian float32, C order (what the golden files are).
Embeddings load_npy_items(const fs::path& path, std::vector<std::int64_t>& shape) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  char magic[8];
  in.read(magic, 8);
  std::uint16_t header_len = 0;
  in.read(reinterpret_cast<char*>(&header_len), 2);
  std::string header(header_len, '\0');
  in.read(header.data(), header_len);
  EXPECT_NE(header.find("'<f4'"), std::string::npos) << header;
  EXPECT_NE(header.find("'fortran_order': False"), std::string::npos) << header;
  const auto open = header.find('(', header.find("'shape'"));
  const auto close = header.find(')', open);
  shape.clear();
  std::string dims = header.substr(open + 1, close - open - 1);
  for (std::size_t pos = 0; pos < dims.size();) {
    const std::size_t comma = dims.find(',', pos);
    const std::string part =
        dims.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    if (part.find_first_of("0123456789") != std::string::npos) shape.push_back(std::stoll(part));
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  std::int64_t total = 1;
  for (std::int64_t d : shape) total *= d;
  Embeddings e;
  e.values.resize(static_cast<std::size_t>(total));
  in.read(reinterpret_cast<char*>(e.values.data()), total * 4);
  EXPECT_TRUE(in.good());
  return e;
}

// Items of `full` [N, V, D] keeping only the first vector of each (a CLS row).
Embeddings first_rows(const Embeddings& full, std::int64_t n, int v, int d) {
  Embeddings e;
  e.count = n;
  e.vectors_per_item = 1;
  e.dim = d;
  for (std::int64_t i = 0; i < n; ++i) {
    const float* row = full.values.data() + i * v * d;
    e.values.insert(e.values.end(), row, row + d);
  }
  return e;
}

}  // namespace

TEST(ScoreRules, ClsUsesTheFirstVectorOnly) {
  const Embeddings items = random_embeddings(50, 3, 40, 1);
  const Embeddings query = random_embeddings(1, 3, 40, 2);
  const auto scores = score_items(query, items, ScoreRule::kCls);
  ASSERT_EQ(scores.size(), 50u);
  for (std::int64_t i = 0; i < 50; ++i) {
    EXPECT_NEAR(scores[i], dot(query.item(0), items.item(i), 40), 1e-5);
  }
}

TEST(ScoreRules, MaxOverQueriesIsTheMaxOverAllPairs) {
  const Embeddings images = random_embeddings(40, 32, 24, 3);
  const Embeddings text = random_embeddings(1, 1, 24, 4);
  const Embeddings image_query = random_embeddings(1, 32, 24, 5);
  const auto text_scores = score_items(text, images, ScoreRule::kMaxOverQueries);
  const auto image_scores = score_items(image_query, images, ScoreRule::kMaxOverQueries);
  for (std::int64_t i = 0; i < 40; ++i) {
    double best_text = -2, best_pair = -2;
    for (int q = 0; q < 32; ++q) {
      const float* v = images.item(i) + q * 24;
      best_text = std::max(best_text, dot(text.item(0), v, 24));
      for (int p = 0; p < 32; ++p) {
        best_pair = std::max(best_pair, dot(image_query.item(0) + p * 24, v, 24));
      }
    }
    EXPECT_NEAR(text_scores[i], best_text, 1e-5);
    EXPECT_NEAR(image_scores[i], best_pair, 1e-5);
  }
}

TEST(ScoreRules, MeanOfQueriesIsACosineOfMeans) {
  const Embeddings images = random_embeddings(30, 32, 20, 6);
  const auto matrix = score_matrix(images, images, ScoreRule::kMeanOfQueries);
  for (std::int64_t a = 0; a < 30; ++a) {
    EXPECT_NEAR(matrix[a * 30 + a], 1.0f, 1e-5);  // self-similarity is exactly a cosine of 1
    for (std::int64_t b = 0; b < 30; ++b) {
      EXPECT_NEAR(matrix[a * 30 + b], matrix[b * 30 + a], 1e-6);  // symmetric
      // Reference in double precision.
      std::vector<double> ma(20, 0), mb(20, 0);
      for (int q = 0; q < 32; ++q)
        for (int d = 0; d < 20; ++d) {
          ma[d] += images.item(a)[q * 20 + d];
          mb[d] += images.item(b)[q * 20 + d];
        }
      double ab = 0, aa = 0, bb = 0;
      for (int d = 0; d < 20; ++d) {
        ab += ma[d] * mb[d];
        aa += ma[d] * ma[d];
        bb += mb[d] * mb[d];
      }
      EXPECT_NEAR(matrix[a * 30 + b], ab / std::sqrt(aa * bb), 1e-5);
    }
  }
  // Pre-reduced items give the same scores as reducing on the fly.
  const Embeddings query = random_embeddings(1, 32, 20, 7);
  const auto on_the_fly = score_items(query, images, ScoreRule::kMeanOfQueries);
  const auto reduced = score_items(query, mean_of_queries(images), ScoreRule::kMeanOfQueries);
  for (std::size_t i = 0; i < on_the_fly.size(); ++i) EXPECT_NEAR(on_the_fly[i], reduced[i], 1e-6);
}

TEST(ScoreRules, ReproduceLavisItcScoresFromGoldenData) {
  MMSEARCH_REQUIRE_SHARED_DATA();
  const fs::path golden = fs::path(MMSEARCH_SHARED_DIR) / "golden";
  struct Case {
    const char* folder;
    ScoreRule rule;
  };
  for (const Case& c : {Case{"blip2_feature_extractor_pretrain", ScoreRule::kMaxOverQueries},
                        Case{"blip_feature_extractor_base", ScoreRule::kCls}}) {
    SCOPED_TRACE(c.folder);
    std::vector<std::int64_t> image_shape, text_shape, sim_shape;
    Embeddings images = load_npy_items(golden / c.folder / "image_embeds_proj.npy", image_shape);
    const Embeddings text_full =
        load_npy_items(golden / c.folder / "text_embeds_proj.npy", text_shape);
    const Embeddings itc = load_npy_items(golden / c.folder / "itc_sim.npy", sim_shape);
    ASSERT_EQ(image_shape.size(), 3u);
    images.count = image_shape[0];
    images.vectors_per_item = static_cast<int>(image_shape[1]);
    images.dim = static_cast<int>(image_shape[2]);
    // Text: the CLS row of the projected text embeddings, as stored by the indexer.
    const Embeddings texts = first_rows(text_full, text_shape[0], static_cast<int>(text_shape[1]),
                                        static_cast<int>(text_shape[2]));
    const auto t2i = score_matrix(texts, images, c.rule);  // [T, N]
    ASSERT_EQ(sim_shape, (std::vector<std::int64_t>{images.count, texts.count}));
    for (std::int64_t i = 0; i < images.count; ++i) {
      for (std::int64_t t = 0; t < texts.count; ++t) {
        EXPECT_NEAR(t2i[t * images.count + i], itc.values[i * texts.count + t], 1e-5)
            << "image " << i << " text " << t;
      }
    }
  }
}

TEST(ScoreRules, ShapeMismatchIsAUsageError) {
  const Embeddings items = random_embeddings(5, 1, 16, 8);
  const Embeddings query = random_embeddings(1, 1, 8, 9);
  try {
    score_items(query, items, ScoreRule::kCls);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUsage);
  }
  EXPECT_THROW(score_items(random_embeddings(2, 1, 16, 1), items, ScoreRule::kCls), Error);
  Embeddings broken = items;
  broken.values.pop_back();
  EXPECT_THROW(score_items(random_embeddings(1, 1, 16, 1), broken, ScoreRule::kCls), Error);
  EXPECT_EQ(score_rule_from_string("max-over-queries"), ScoreRule::kMaxOverQueries);
  EXPECT_THROW(score_rule_from_string("max"), Error);
  Embeddings empty;
  EXPECT_TRUE(score_items(random_embeddings(1, 1, 16, 1), empty, ScoreRule::kCls).empty());
}

TEST(Fusion, WeightedSumNormalisedBySumOfAbsoluteWeights) {
  const std::vector<float> a = {1.0f, 0.0f, 0.5f}, b = {0.0f, 1.0f, 0.5f};
  // One term with any positive weight scores like the term alone.
  EXPECT_EQ(fuse_scores({{a, 3.0f}}), a);
  const auto sum = fuse_scores({{a, 1.0f}, {b, 1.0f}});
  EXPECT_FLOAT_EQ(sum[0], 0.5f);
  EXPECT_FLOAT_EQ(sum[2], 0.5f);
  // Subtraction: a - 0.5 b, divided by 1.5.
  const auto diff = fuse_scores({{a, 1.0f}, {b, -0.5f}});
  EXPECT_FLOAT_EQ(diff[0], 1.0f / 1.5f);
  EXPECT_FLOAT_EQ(diff[1], -0.5f / 1.5f);
  EXPECT_FLOAT_EQ(diff[2], 0.25f / 1.5f);
  // The combined score of normalised terms stays within [-1, 1].
  for (float v : fuse_scores({{a, 2.0f}, {b, -7.0f}})) {
    EXPECT_LE(std::fabs(v), 1.0f);
  }
  EXPECT_THROW(fuse_scores({}), Error);
  EXPECT_THROW(fuse_scores({{a, 0.0f}}), Error);
  EXPECT_THROW(fuse_scores({{a, 1.0f}, {{1.0f}, 1.0f}}), Error);
  EXPECT_THROW(fuse_scores({{a, std::numeric_limits<float>::infinity()}}), Error);
}

TEST(Fusion, ParsesWeightedTerms) {
  const auto check = [](const std::string& term, const std::string& text, float weight) {
    const ParsedTerm p = parse_weighted_term(term);
    EXPECT_EQ(p.text, text) << term;
    EXPECT_FLOAT_EQ(p.weight, weight) << term;
  };
  check("pizza", "pizza", 1.0f);
  check("-cheese", "cheese", -1.0f);
  check("2:pizza", "pizza", 2.0f);
  check("-0.5:cheese", "cheese", -0.5f);
  check("+1.5:basil", "basil", 1.5f);
  check("-:cheese", "cheese", -1.0f);
  check(".5:x", "x", 0.5f);
  check("note: red", "note: red", 1.0f);
  check("ratio 1:2", "ratio 1:2", 1.0f);
  check("10:30 sunset", "30 sunset", 10.0f);  // a leading number is a weight
  check("-", "-", 1.0f);
}

TEST(TopK, OrdersFiltersAndExcludes) {
  const std::vector<float> scores = {0.1f, 0.9f, 0.5f, 0.9f, std::nanf(""), 0.7f, -0.2f};
  auto hits = top_k(scores, 3, -std::numeric_limits<float>::infinity());
  ASSERT_EQ(hits.size(), 3u);
  EXPECT_EQ(hits[0].index, 1);  // ties: lower index first
  EXPECT_EQ(hits[1].index, 3);
  EXPECT_EQ(hits[2].index, 5);
  hits = top_k(scores, 10, 0.4f, {1});
  ASSERT_EQ(hits.size(), 3u);  // 3, 5, 2: above the threshold, 1 excluded, NaN skipped
  EXPECT_EQ(hits[0].index, 3);
  EXPECT_EQ(hits[2].index, 2);
  EXPECT_FLOAT_EQ(hits[2].score, 0.5f);
  EXPECT_TRUE(top_k(scores, 0, 0.0f).empty());
  EXPECT_THROW(top_k(scores, -1, 0.0f), Error);
  EXPECT_TRUE(top_k({}, 5, 0.0f).empty());
}

TEST(TopK, MatchesAFullSortOnRandomScores) {
  std::mt19937 rng(42);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> scores(5000);
  for (float& s : scores) s = std::round(u(rng) * 100) / 100;  // many ties
  std::vector<std::int64_t> order(scores.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<std::int64_t>(i);
  std::stable_sort(order.begin(), order.end(),
                   [&](std::int64_t a, std::int64_t b) { return scores[a] > scores[b]; });
  const auto hits = top_k(scores, 100, -2.0f);
  ASSERT_EQ(hits.size(), 100u);
  for (std::size_t r = 0; r < 100; ++r) EXPECT_EQ(hits[r].index, order[r]) << r;
}
