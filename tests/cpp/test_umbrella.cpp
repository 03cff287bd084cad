// The usage example at the top of include/mmsearch/mmsearch.h, run as written (with a temporary
// store and folder): the umbrella header compiles on its own and the documented flow works.
#include <gtest/gtest.h>

#include <opencv2/imgcodecs.hpp>

#include "mmsearch/mmsearch.h"
#include "test_dirs.h"

namespace fs = std::filesystem;

TEST(Umbrella, DocumentedFlowIndexesAndQueries) {
  const fs::path dir = mmsearch::test_support::fresh_test_dir("umbrella", "flow");
  const fs::path photos = dir / "dishes";
  fs::create_directories(photos);
  for (int i = 0; i < 3; ++i) {
    const cv::Mat image(40, 40, CV_8UC3, cv::Scalar(60 * i, 200 - 50 * i, 90));
    ASSERT_TRUE(cv::imwrite((photos / ("dish-" + std::to_string(i) + ".png")).string(), image));
  }

  mmsearch::Bundle bundle =
      mmsearch::find_bundle("dishes-tiny", {fs::path(MMSEARCH_SOURCE_DIR) / "models"});
  bundle.verify_files({});
  mmsearch::Encoder encoder(bundle);
  mmsearch::IndexStore store(dir / "index.sqlite3");
  const mmsearch::IndexSummary summary =
      mmsearch::index_folder(encoder, store, photos, mmsearch::IndexOptions{});
  EXPECT_EQ(summary.indexed, 3);

  mmsearch::QueryOptions options;
  options.scope = photos;
  options.k = 5;
  const mmsearch::QueryResult result = mmsearch::run_query(
      encoder, store, {{mmsearch::QueryTerm::Kind::kText, "lasagne with ragù", 1.0f}}, options);
  ASSERT_EQ(result.hits.size(), 3u);
  EXPECT_EQ(result.model_id, bundle.identity());
  EXPECT_GE(result.hits[0].score, result.hits[2].score);
}
