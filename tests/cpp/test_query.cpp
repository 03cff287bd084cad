// run_query() on the committed models/dishes-tiny bundle and a small generated folder: the
// query image never returns itself, weighted terms fuse as documented, every --against side
// works, and errors come as the documented kinds.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <fstream>
#include <opencv2/imgcodecs.hpp>

#include "mmsearch/indexer.h"
#include "mmsearch/query.h"
#include "test_dirs.h"

namespace fs = std::filesystem;
using namespace mmsearch;
using mmsearch::test_support::error_of;

namespace {

class QueryTest : public ::testing::Test {
 protected:
  // CTest runs each test in its own process, possibly side by side: one folder per process.
  static void SetUpTestSuite() {
    dir_ =
        new fs::path(test_support::fresh_test_dir("query", "suite-" + std::to_string(::getpid())));
    photos_ = new fs::path(*dir_ / "photos");
    fs::create_directories(*photos_);
    std::ofstream captions(*photos_ / "captions.csv");
    captions << "file,caption\n";
    for (int i = 0; i < 4; ++i) {
      const cv::Mat image(40, 40, CV_8UC3, cv::Scalar(50 * i, 180 - 40 * i, 30 + 50 * i));
      const std::string name = "p" + std::to_string(i) + ".png";
      ASSERT_TRUE(cv::imwrite((*photos_ / name).string(), image));
      captions << name << ",a dish number " << i << "\n";
    }
    captions.close();
    encoder_ = new Encoder(find_bundle("dishes-tiny", {fs::path(MMSEARCH_SOURCE_DIR) / "models"}));
    store_ = new IndexStore(*dir_ / "index.sqlite3");
    ASSERT_EQ(index_folder(*encoder_, *store_, *photos_, IndexOptions{}).indexed, 4);
  }
  static void TearDownTestSuite() {
    delete store_;
    delete encoder_;
    delete photos_;
    delete dir_;
  }
  static QueryResult query(const std::vector<QueryTerm>& terms, Against against = Against::kImage,
                           int k = 10) {
    QueryOptions options;
    options.scope = *photos_;
    options.against = against;
    options.k = k;
    return run_query(*encoder_, *store_, terms, options);
  }
  static float score_of(const QueryResult& result, const std::string& name) {
    for (const auto& hit : result.hits) {
      if (fs::path(hit.path).filename() == name) return hit.score;
    }
    return NAN;
  }
  static fs::path* dir_;
  static fs::path* photos_;
  static Encoder* encoder_;
  static IndexStore* store_;
};
fs::path* QueryTest::dir_ = nullptr;
fs::path* QueryTest::photos_ = nullptr;
Encoder* QueryTest::encoder_ = nullptr;
IndexStore* QueryTest::store_ = nullptr;

TEST_F(QueryTest, TheQueryImageNeverReturnsItself) {
  const std::string image = (*photos_ / "p1.png").string();
  const QueryResult result = query({{QueryTerm::Kind::kImage, image, 1.0f}});
  EXPECT_EQ(result.searched, 4);
  ASSERT_EQ(result.hits.size(), 3u);
  for (const auto& hit : result.hits) EXPECT_NE(fs::path(hit.path).filename(), "p1.png");
  for (std::size_t i = 0; i < result.hits.size(); ++i) EXPECT_EQ(result.hits[i].rank, i + 1);
}

TEST_F(QueryTest, WeightedTermsFuseAsDocumented) {
  const QueryResult pizza = query({{QueryTerm::Kind::kText, "a pizza", 1.0f}});
  const QueryResult dessert = query({{QueryTerm::Kind::kText, "a dessert", 1.0f}});
  const QueryResult both = query(
      {{QueryTerm::Kind::kText, "a pizza", 2.0f}, {QueryTerm::Kind::kText, "a dessert", -1.0f}});
  for (const auto& hit : both.hits) {
    const std::string name = fs::path(hit.path).filename().string();
    // sum_t w_t * score_t / sum_t |w_t|
    EXPECT_NEAR(hit.score, (2.0f * score_of(pizza, name) - score_of(dessert, name)) / 3.0f, 1e-5);
  }
  // One term with any positive weight scores exactly like the term alone.
  const QueryResult heavy = query({{QueryTerm::Kind::kText, "a pizza", 7.0f}});
  for (std::size_t i = 0; i < heavy.hits.size(); ++i) {
    EXPECT_EQ(heavy.hits[i].path, pizza.hits[i].path);
    EXPECT_FLOAT_EQ(heavy.hits[i].score, pizza.hits[i].score);
  }
}

TEST_F(QueryTest, EverySideCanBeSearched) {
  for (const Against against : {Against::kImage, Against::kText, Against::kMultimodal}) {
    const QueryResult result = query({{QueryTerm::Kind::kText, "a dish", 1.0f}}, against, 2);
    EXPECT_EQ(result.searched, 4) << to_string(against);
    ASSERT_EQ(result.hits.size(), 2u) << to_string(against);
    EXPECT_GE(result.hits[0].score, result.hits[1].score);
    EXPECT_LE(result.hits[0].score, 1.0f + 1e-5f);
    EXPECT_FALSE(result.hits[0].caption.empty());
  }
}

TEST_F(QueryTest, ErrorsHaveTheirKinds) {
  EXPECT_EQ(error_of([] { query({}); }).first, ErrorKind::kUsage);
  EXPECT_EQ(error_of([] {
              query({{QueryTerm::Kind::kImage, (*dir_ / "missing.png").string(), 1.0f}});
            }).first,
            ErrorKind::kInput);
  QueryOptions elsewhere;
  elsewhere.scope = *dir_ / "never-indexed";
  const auto [kind, message] = error_of([&] {
    run_query(*encoder_, *store_, {{QueryTerm::Kind::kText, "x", 1.0f}}, elsewhere);
  });
  EXPECT_EQ(kind, ErrorKind::kIndex);
  EXPECT_NE(message.find("has not been indexed"), std::string::npos) << message;
}

}  // namespace

// "More like this" (serve's `similar` term): the stored vectors of an indexed file give the
// ranking its image gives, without a model pass, and the file itself is left out.
TEST_F(QueryTest, AnIndexedFileIsSearchedByItsStoredVectors) {
  const std::string image = (*photos_ / "p2.png").string();
  for (const Against against : {Against::kImage, Against::kText, Against::kMultimodal}) {
    const QueryResult from_image =
        query({{QueryTerm::Kind::kImage, image, 1.0f, nullptr}}, against);
    const QueryResult stored = query({{QueryTerm::Kind::kIndexed, image, 1.0f, nullptr}}, against);
    ASSERT_EQ(stored.hits.size(), from_image.hits.size()) << to_string(against);
    EXPECT_EQ(stored.phases.forward_ms, 0.0);
    for (std::size_t i = 0; i < stored.hits.size(); ++i) {
      EXPECT_EQ(stored.hits[i].path, from_image.hits[i].path) << to_string(against);
      // The store keeps fp16 vectors; the query image's are fp32.
      EXPECT_NEAR(stored.hits[i].score, from_image.hits[i].score, 2e-3) << to_string(against);
      EXPECT_NE(fs::path(stored.hits[i].path).filename(), "p2.png");
    }
  }
  const auto [kind, message] = error_of([&] {
    query({{QueryTerm::Kind::kIndexed, (*photos_ / "nope.png").string(), 1.0f, nullptr}});
  });
  EXPECT_EQ(kind, ErrorKind::kInput);
  EXPECT_NE(message.find("not indexed"), std::string::npos) << message;
}

// An uploaded image comes decoded; it is not a file of the folder, so nothing is left out.
TEST_F(QueryTest, DecodedPixelsAreAQueryImage) {
  const std::string image = (*photos_ / "p3.png").string();
  auto pixels = std::make_shared<RgbImage>(decode_image(image));
  const QueryResult result = query({{QueryTerm::Kind::kImage, "upload.png", 1.0f, pixels}});
  ASSERT_EQ(result.hits.size(), 4u);
  EXPECT_EQ(fs::path(result.hits[0].path).filename(), "p3.png");
  EXPECT_NEAR(result.hits[0].score, 1.0f, 2e-3);
}
