#include <csv.h>
#include <gtest/gtest.h>

#include <fstream>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <random>
#include <sstream>

#include "mmsearch/error.h"
#include "mmsearch/render.h"
#include "mmsearch/simmatrix.h"
#include "shared_data.h"

namespace fs = std::filesystem;
using namespace mmsearch;

namespace {

fs::path out_dir() {
  const fs::path dir = fs::path(MMSEARCH_TEST_TMP_DIR) / "simmatrix";
  fs::create_directories(dir);
  return dir;
}

// RFC 4180 reader (libcsv, the library the writer quotes with), also for captions.csv.
std::vector<std::vector<std::string>> read_csv(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();
  struct Rows {
    std::vector<std::vector<std::string>> rows{1};
  } rows;
  csv_parser parser;
  EXPECT_EQ(csv_init(&parser, CSV_STRICT | CSV_STRICT_FINI), 0);
  const auto on_field = [](void* field, std::size_t size, void* data) {
    static_cast<Rows*>(data)->rows.back().emplace_back(static_cast<const char*>(field), size);
  };
  const auto on_row = [](int, void* data) { static_cast<Rows*>(data)->rows.emplace_back(); };
  EXPECT_EQ(csv_parse(&parser, text.data(), text.size(), on_field, on_row, &rows), text.size())
      << csv_strerror(csv_error(&parser));
  EXPECT_EQ(csv_fini(&parser, on_field, on_row, &rows), 0);
  csv_free(&parser);
  if (rows.rows.back().empty()) rows.rows.pop_back();
  return rows.rows;
}

// Items in categories given in shuffled order; scores high within a category, low across,
// with deterministic noise, so the block structure is known.
SimilarityMatrix synthetic_matrix(int per_category, const std::vector<std::string>& categories,
                                  SimilarityKind kind, unsigned seed) {
  SimilarityMatrix m;
  m.model = "synthetic-model";
  m.kind = kind;
  std::mt19937 rng(seed);
  std::vector<std::string> items;
  for (const std::string& c : categories)
    for (int i = 0; i < per_category; ++i) items.push_back(c);
  std::shuffle(items.begin(), items.end(), rng);
  for (std::size_t i = 0; i < items.size(); ++i) {
    m.row_labels.push_back(items[i] + "_" + std::to_string(i) + ".jpg");
    m.row_categories.push_back(items[i]);
  }
  m.col_labels = m.row_labels;
  m.col_categories = m.row_categories;
  std::uniform_real_distribution<float> noise(-0.05f, 0.05f);
  for (std::size_t r = 0; r < items.size(); ++r) {
    for (std::size_t c = 0; c < items.size(); ++c) {
      float v = items[r] == items[c] ? 0.75f : 0.30f;
      v = r == c ? 1.0f : v + noise(rng);
      m.scores.push_back(v);
    }
  }
  return m;
}

RgbImage load_rgb(const fs::path& path) {
  cv::Mat bgr = cv::imread(path.string(), cv::IMREAD_COLOR);
  RgbImage image;
  if (bgr.empty()) return image;
  cv::Mat rgb;
  cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
  image.width = rgb.cols;
  image.height = rgb.rows;
  image.pixels.assign(rgb.data, rgb.data + rgb.total() * 3);
  return image;
}

std::array<int, 3> pixel(const RgbImage& image, int x, int y) {
  const std::size_t i = (static_cast<std::size_t>(y) * image.width + x) * 3;
  return {image.pixels[i], image.pixels[i + 1], image.pixels[i + 2]};
}

}  // namespace

TEST(SimilarityKind, NamesRoundTrip) {
  for (const char* name :
       {"image-image", "image-text", "image-multimodal", "multimodal-multimodal", "text-text"}) {
    EXPECT_STREQ(to_string(similarity_kind_from_string(name)), name);
  }
  try {
    similarity_kind_from_string("image-images");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUsage);
    EXPECT_NE(std::string(e.what()).find("multimodal-multimodal"), std::string::npos);
  }
}

TEST(SimilarityMatrix, GroupingIsStableAndPermutesScores) {
  SimilarityMatrix m;
  m.row_labels = {"r0", "r1", "r2", "r3"};
  m.row_categories = {"b", "a", "b", "a"};
  m.col_labels = {"c0", "c1", "c2"};
  m.col_categories = {"z", "y", "z"};
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 3; ++c) m.scores.push_back(static_cast<float>(10 * r + c));
  const SimilarityMatrix g = grouped_by_category(m);
  EXPECT_EQ(g.row_labels, (std::vector<std::string>{"r1", "r3", "r0", "r2"}));
  EXPECT_EQ(g.col_labels, (std::vector<std::string>{"c1", "c0", "c2"}));
  EXPECT_EQ(g.scores, (std::vector<float>{11, 10, 12, 31, 30, 32, 1, 0, 2, 21, 20, 22}));
  m.scores.pop_back();
  EXPECT_THROW(grouped_by_category(m), Error);
}

TEST(SimilarityMatrix, CsvQuotesAndRoundTrips) {
  SimilarityMatrix m;
  m.row_labels = {"plain.jpg", "with,comma.jpg", "say \"cheese\".jpg", "デザート/プリン.jpg"};
  m.row_categories = {"", "", "", "デザート"};
  m.col_labels = {"A pizza, with basil", "line\nbreak", "crlf\r\nand \"quote\", comma"};
  m.col_categories = {"", "", ""};
  m.scores = {0.5f, -0.25f, 1.0f, 0.0f, 0.123456f, 0.999999f, 0.1f, 0.2f, 0.3f, -1.0f, 0.0f, 0.5f};
  const fs::path path = out_dir() / "quoting.csv";
  write_similarity_csv(m, path);
  const auto rows = read_csv(path);
  ASSERT_EQ(rows.size(), 5u);
  EXPECT_EQ(rows[0], (std::vector<std::string>{"label", "A pizza, with basil", "line\nbreak",
                                               "crlf\r\nand \"quote\", comma"}));
  for (std::size_t r = 0; r < m.row_labels.size(); ++r) {
    ASSERT_EQ(rows[r + 1].size(), 4u);
    EXPECT_EQ(rows[r + 1][0], m.row_labels[r]);
  }
  EXPECT_EQ(rows[1][2], "-0.250000");
  EXPECT_EQ(rows[2][2], "0.123456");
  EXPECT_EQ(rows[4][1], "-1.000000");
  EXPECT_THROW(write_similarity_csv(m, out_dir() / "no" / "such" / "dir.csv"), Error);
  m.scores.pop_back();
  EXPECT_THROW(write_similarity_csv(m, out_dir() / "bad.csv"), Error);
}

TEST(Heatmap, BlockStructureIsVisible) {
  const std::vector<std::string> categories = {"pizza", "pasta", "dessert", "second courses"};
  const SimilarityMatrix m =
      synthetic_matrix(6, categories, SimilarityKind::kImageImage, /*seed=*/7);
  const fs::path png = out_dir() / "heatmap_blocks.png";
  write_heatmap_png(m, png);
  write_similarity_csv(grouped_by_category(m), out_dir() / "heatmap_blocks.csv");
  ASSERT_TRUE(fs::exists(png));
  const RgbImage image = render_heatmap(m);
  ASSERT_GT(image.width, 900);
  ASSERT_GT(image.height, 900);

  // Find the matrix area: the first row from the top whose middle is viridis-coloured (not
  // grey). Then compare a within-block cell with an across-block cell: after grouping, the top
  // left block is one category, so cell (1, 2) is within and cell (1, 20) across.
  const RgbImage decoded = load_rgb(png);
  ASSERT_EQ(decoded.width, image.width);
  const HeatmapOptions defaults;
  const int cell = defaults.matrix_pixels / 24;
  int matrix_x = -1, matrix_y = -1;
  for (int y = 0; y < image.height && matrix_y < 0; ++y) {
    for (int x = 0; x < image.width / 2; ++x) {
      const auto p = pixel(image, x, y);
      const bool coloured = std::abs(p[0] - p[1]) > 40 || std::abs(p[1] - p[2]) > 40;
      if (coloured && y > 100) {
        matrix_x = x;
        matrix_y = y;
        break;
      }
    }
  }
  ASSERT_GE(matrix_y, 0);
  const auto within = pixel(image, matrix_x + 2 * cell + cell / 2, matrix_y + cell + cell / 2);
  const auto across = pixel(image, matrix_x + 20 * cell + cell / 2, matrix_y + cell + cell / 2);
  // Viridis: high values are yellow (high red + green), low values dark purple.
  EXPECT_GT(within[0] + within[1], across[0] + across[1] + 150);
}

TEST(Heatmap, RectangularImageTextAndSmallMatrices) {
  SimilarityMatrix m =
      synthetic_matrix(5, {"fruit", "vegetable", "drink"}, SimilarityKind::kImageText, 3);
  m.col_labels.clear();
  for (std::size_t i = 0; i < m.row_labels.size(); ++i) {
    m.col_labels.push_back("A caption about " + m.row_categories[i] + ", item " +
                           std::to_string(i));
  }
  write_heatmap_png(m, out_dir() / "heatmap_image_text.png");

  SimilarityMatrix one;
  one.model = "tiny";
  one.kind = SimilarityKind::kTextText;
  one.row_labels = {"only"};
  one.row_categories = {"x"};
  one.col_labels = {"only"};
  one.col_categories = {"x"};
  one.scores = {1.0f};
  EXPECT_GT(render_heatmap(one).width, 0);

  SimilarityMatrix empty;
  EXPECT_THROW(render_heatmap(empty), Error);
}

TEST(Heatmap, ManyItemsDropItemLabelsButKeepCategories) {
  const SimilarityMatrix m =
      synthetic_matrix(40, {"a", "b", "c", "d", "e"}, SimilarityKind::kMultimodalMultimodal, 11);
  const RgbImage image = render_heatmap(m);
  EXPECT_LT(image.width, 1400);  // 200 items still fit the default 900 px matrix
  write_png(image, out_dir() / "heatmap_200.png");
}

TEST(Montage, DrawsQueryAndResultsFromRealPhotos) {
  MMSEARCH_REQUIRE_SHARED_DATA();
  const fs::path photos = fs::path(MMSEARCH_SHARED_DIR) / "data" / "photos";
  const auto rows = read_csv(photos / "captions.csv");
  ASSERT_GT(rows.size(), 6u);
  std::vector<MontageResult> results;
  for (std::size_t i = 1; i < rows.size() && results.size() < 7; ++i) {
    MontageResult r;
    r.image = load_rgb(photos / rows[i][0]);
    ASSERT_GT(r.image.width, 0) << rows[i][0];
    r.label = rows[i][0];
    r.caption = rows[i][1];
    r.category = rows[i][2];
    r.score = 0.9f - 0.05f * static_cast<float>(results.size());
    results.push_back(std::move(r));
  }
  results.push_back({RgbImage{}, "broken.jpg", "", "", 0.1f});  // an unreadable result
  // Names and captions in other scripts; a Chinese caption has no spaces to wrap at.
  results.push_back(
      {load_rgb(photos / rows[1][0]), "甜点_01.jpg",
       "一块提拉米苏，上面撒满了可可粉，放在白色的盘子上，旁边还有一杯咖啡和一些新鲜的草莓", "甜点",
       0.05f});

  MontageOptions options;
  options.title = "blip2-pretrain  -  text -> image, k = 8";
  const std::vector<MontageQueryTerm> text_query = {
      {RgbImage{}, "a pizza with olives and tomato / пицца с оливками / オリーブのピザ", 1.0f}};
  const RgbImage text_montage = render_montage(text_query, results, options);
  write_png(text_montage, out_dir() / "montage_text.png");
  EXPECT_EQ(text_montage.width, render_montage(text_query, results, options).width);

  // A combined query: an image plus a text, and a subtracted text.
  std::vector<MontageQueryTerm> combined = {
      {load_rgb(photos / rows[1][0]), "", 1.0f},
      {RgbImage{}, "with mushrooms", 0.5f},
      {RgbImage{}, "cheese", -0.5f},
  };
  options.title = "blip-base  -  combined query";
  std::vector<MontageResult> top3(results.begin() + 1, results.begin() + 4);
  const RgbImage combined_montage = render_montage(combined, top3, options);
  write_png(combined_montage, out_dir() / "montage_combined.png");
  EXPECT_LT(combined_montage.width, text_montage.width);  // fewer columns

  // No results still draws the query.
  EXPECT_GT(render_montage(text_query, {}, options).width, 0);
  EXPECT_THROW(write_png(RgbImage{}, out_dir() / "empty.png"), Error);
}

TEST(Heatmap, ItemLabelsDropTheirCategoryFolder) {
  EXPECT_EQ(label_within_category("dessert/dish-001.jpg", "dessert"), "dish-001.jpg");
  EXPECT_EQ(label_within_category("デザート/プリン.jpg #2", "デザート"), "プリン.jpg #2");
  EXPECT_EQ(label_within_category("dessert/sub/a.jpg", "dessert"), "sub/a.jpg");
  // Not under the category's folder (a category from a captions file), or no category.
  EXPECT_EQ(label_within_category("misc/a.jpg", "dessert"), "misc/a.jpg");
  EXPECT_EQ(label_within_category("desserts/a.jpg", "dessert"), "desserts/a.jpg");
  EXPECT_EQ(label_within_category("a.jpg", ""), "a.jpg");
  EXPECT_EQ(label_within_category("dessert/", "dessert"), "dessert/");
}

namespace {

// The same matrix under other category names: folder "<category>/item_i.jpg".
SimilarityMatrix renamed(const SimilarityMatrix& m, const std::vector<std::string>& from,
                         const std::vector<std::string>& to) {
  SimilarityMatrix out = m;
  for (auto* side : {&out.row_categories, &out.col_categories}) {
    for (std::string& c : *side) c = to[std::find(from.begin(), from.end(), c) - from.begin()];
  }
  for (std::size_t i = 0; i < out.row_labels.size(); ++i) {
    out.row_labels[i] = out.row_categories[i] + "/item_" + std::to_string(i) + ".jpg";
    out.col_labels[i] = out.col_categories[i] + "/item_" + std::to_string(i) + ".jpg";
  }
  return out;
}

}  // namespace

TEST(Heatmap, NonLatinCategoryNamesAreDrawnNotReplaced) {
  // With ASCII-only fonts both pictures were byte-identical ("????"); now each name is drawn.
  const std::vector<std::string> base = {"a", "b", "c"};
  const SimilarityMatrix m = synthetic_matrix(4, base, SimilarityKind::kImageImage, 5);
  const SimilarityMatrix japanese = renamed(m, base, {"デザート", "Пельмени", "tiramisù"});
  const SimilarityMatrix chinese = renamed(m, base, {"甜点", "Пельмени", "tiramisù"});
  const RgbImage a = render_heatmap(japanese);
  const RgbImage b = render_heatmap(chinese);
  write_png(a, out_dir() / "heatmap_japanese.png");
  write_png(b, out_dir() / "heatmap_chinese.png");
  ASSERT_EQ(a.width, b.width);
  ASSERT_EQ(a.height, b.height);
  EXPECT_NE(a.pixels, b.pixels);
  // Only the category headers differ: the item labels drop the category folder, so the
  // matrix and item label areas are the same.
  int first_row = -1;
  for (int y = 0; y < a.height && first_row < 0; ++y) {
    for (int x = 0; x < a.width; ++x) {
      if (pixel(a, x, y) != pixel(b, x, y)) {
        first_row = y;
        break;
      }
    }
  }
  EXPECT_GT(first_row, 64);  // not in the title
}
