#include <csv.h>
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <fstream>
#include <map>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <random>
#include <set>
#include <sstream>

#include "fresh_dir.h"
#include "mmsearch/bundle.h"
#include "mmsearch/error.h"
#include "mmsearch/index.h"
#include "mmsearch/render.h"
#include "mmsearch/sample.h"
#include "mmsearch/simmatrix.h"
#include "shared_data.h"
#include "synthetic_store.h"

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

// ---------------------------------------------------------------------------------------------
// At scale: stratified samples, sides, streamed CSV.

namespace {

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

std::map<std::string, std::size_t> count_by(const std::vector<std::string>& values) {
  std::map<std::string, std::size_t> counts;
  for (const std::string& v : values) ++counts[v];
  return counts;
}

Manifest manifest_of(Family family) {
  Manifest m;
  m.name = family == Family::kBlip ? "synthetic-blip" : "synthetic-blip2";
  m.family = family;
  if (family == Family::kBlip2) {
    m.similarity_text_image = ScoreRule::kMaxOverQueries;
    m.similarity_image_image = ScoreRule::kMeanOfQueries;
  }
  return m;
}

// A store of `spec` under model "m", built once per spec in the test's own folder.
IndexStore synthetic_store(const std::string& name, const test_support::SyntheticStore& spec) {
  const fs::path dir = fresh_test_dir("simmatrix", name);
  IndexStore store(dir / "index.sqlite3");
  test_support::fill_synthetic_store(store, "m", spec);
  return store;
}

const std::vector<SimilarityKind> kAllKinds = {
    SimilarityKind::kImageImage, SimilarityKind::kImageText, SimilarityKind::kImageMultimodal,
    SimilarityKind::kMultimodalMultimodal, SimilarityKind::kTextText};

// The matrix as it was built before sides existed: every vector loaded, the whole score matrix
// (score_matrix, reduced sides for mean-of-queries), then grouped by category. The streamed CSV
// must be byte-identical to this.
SimilarityMatrix reference_matrix(const IndexStore& store, const Manifest& manifest,
                                  const fs::path& scope, SimilarityKind kind) {
  const MatrixRule rule = matrix_rule(manifest, kind);
  const LoadedVectors rows = store.load_vectors("m", scope, rule.rows);
  const LoadedVectors cols = store.load_vectors("m", scope, rule.cols);
  SimilarityMatrix m;
  m.model = manifest.name;
  m.kind = kind;
  const auto label = [&](const VectorOwner& o) {
    std::string l = fs::path(o.path).lexically_relative(scope).string();
    if (o.caption_index > 0) l += " #" + std::to_string(o.caption_index + 1);
    return l;
  };
  for (const auto& o : rows.owners) {
    m.row_labels.push_back(label(o));
    m.row_categories.push_back(o.category);
  }
  for (const auto& o : cols.owners) {
    m.col_labels.push_back(label(o));
    m.col_categories.push_back(o.category);
  }
  if (rule.rule == ScoreRule::kMeanOfQueries) {
    m.scores =
        score_matrix(mean_of_queries(rows.embeddings), mean_of_queries(cols.embeddings), rule.rule);
  } else {
    m.scores = score_matrix(rows.embeddings, cols.embeddings, rule.rule);
  }
  return grouped_by_category(m);
}

}  // namespace

TEST(StratifiedSample, KeepsCategoryProportionsByLargestRemainder) {
  // 60 a, 30 b, 9 c, 1 d (M = 100). n = 10: exact shares 6, 3, 0.9, 0.1 -> 6, 3, 1, 0.
  std::vector<std::string> categories, keys;
  for (auto [c, count] :
       std::vector<std::pair<std::string, int>>{{"a", 60}, {"b", 30}, {"c", 9}, {"d", 1}}) {
    for (int i = 0; i < count; ++i) {
      categories.push_back(c);
      keys.push_back("/p/" + c + "/" + std::to_string(i) + ".jpg");
    }
  }
  // Shuffle so the categories are interleaved in index order.
  std::mt19937 rng(3);
  std::vector<std::size_t> perm(categories.size());
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  std::vector<std::string> cat2, key2;
  for (std::size_t i : perm) {
    cat2.push_back(categories[i]);
    key2.push_back(keys[i]);
  }
  const auto kept = stratified_sample(cat2, key2, 10, 42);
  ASSERT_EQ(kept.size(), 10u);
  EXPECT_TRUE(std::is_sorted(kept.begin(), kept.end()));
  EXPECT_EQ(std::set<std::size_t>(kept.begin(), kept.end()).size(), 10u);
  std::vector<std::string> kept_categories;
  for (std::size_t i : kept) kept_categories.push_back(cat2[i]);
  EXPECT_EQ(count_by(kept_categories),
            (std::map<std::string, std::size_t>{{"a", 6}, {"b", 3}, {"c", 1}}));

  // Seeded: the same seed gives the same sample, another seed another one (of the same
  // proportions); the order of the input does not matter, only the keys.
  EXPECT_EQ(stratified_sample(cat2, key2, 10, 42), kept);
  const auto other = stratified_sample(cat2, key2, 10, 43);
  EXPECT_NE(other, kept);
  std::vector<std::string> other_categories;
  for (std::size_t i : other) other_categories.push_back(cat2[i]);
  EXPECT_EQ(count_by(other_categories), count_by(kept_categories));
  std::set<std::string> kept_keys, unshuffled_keys;
  for (std::size_t i : kept) kept_keys.insert(key2[i]);
  for (std::size_t i : stratified_sample(categories, keys, 10, 42)) unshuffled_keys.insert(keys[i]);
  EXPECT_EQ(kept_keys, unshuffled_keys);

  // Every n: quotas add up to n and stay within one item of the exact share.
  for (std::size_t n : {1u, 7u, 33u, 99u}) {
    std::vector<std::string> got;
    for (std::size_t i : stratified_sample(cat2, key2, n, 5)) got.push_back(cat2[i]);
    ASSERT_EQ(got.size(), n);
    const auto counts = count_by(got);
    for (auto [c, total] : count_by(cat2)) {
      const double exact = static_cast<double>(n) * total / cat2.size();
      const double given = counts.count(c) ? counts.at(c) : 0;
      EXPECT_LT(std::abs(given - exact), 1.0) << c << " n=" << n;
    }
  }
  // n >= M keeps everything; mismatched inputs are refused.
  EXPECT_EQ(stratified_sample(cat2, key2, 100, 1).size(), 100u);
  EXPECT_EQ(stratified_sample(cat2, key2, 1000, 1).size(), 100u);
  key2.pop_back();
  EXPECT_THROW(stratified_sample(cat2, key2, 10, 1), Error);
}

TEST(SimilaritySides, StreamedCsvIsByteIdenticalToTheWholeMatrix) {
  // BLIP (cls) and BLIP-2 (max-over-queries for image-text, mean-of-queries image-image), two
  // captions per file, categories not in path order (so grouping moves rows).
  for (const Family family : {Family::kBlip, Family::kBlip2}) {
    test_support::SyntheticStore spec;
    spec.files = 23;
    spec.categories = 3;
    spec.captions_per_file = 2;
    spec.image_rows = family == Family::kBlip2 ? 32 : 1;
    spec.dim = 16;
    const IndexStore store = synthetic_store(std::string("identical-") + to_string(family), spec);
    const Manifest manifest = manifest_of(family);
    for (const SimilarityKind kind : kAllKinds) {
      SCOPED_TRACE(std::string(to_string(family)) + " " + to_string(kind));
      const SimilarityMatrix reference = reference_matrix(store, manifest, spec.root, kind);
      const fs::path whole = out_dir() / "whole.csv", streamed = out_dir() / "streamed.csv";
      write_similarity_csv(reference, whole);
      const SimilaritySides sides = load_similarity_sides(store, manifest, "m", spec.root, kind);
      EXPECT_FALSE(sides.rows.sampled());
      EXPECT_EQ(sample_note(sides), "");
      write_similarity_csv(sides, streamed);
      const std::string bytes = read_bytes(whole);
      ASSERT_GT(bytes.size(), 100u);
      EXPECT_EQ(read_bytes(streamed), bytes);
      // The in-memory path from the same sides, and build_similarity_matrix, agree too.
      const SimilarityMatrix computed = compute_similarity_matrix(sides);
      EXPECT_EQ(computed.scores, reference.scores);
      EXPECT_EQ(computed.row_labels, reference.row_labels);
      EXPECT_EQ(computed.col_labels, reference.col_labels);
      EXPECT_EQ(build_similarity_matrix(store, manifest, "m", spec.root, kind).scores,
                reference.scores);
      const auto rows = read_csv(streamed);
      EXPECT_EQ(rows[0][0], "label");
      EXPECT_EQ(rows.size(), reference.row_labels.size() + 1);
    }
  }
}

TEST(SimilaritySides, SampleIsSeededStratifiedAndSaysSoInTheCsv) {
  test_support::SyntheticStore spec;
  spec.files = 60;
  spec.categories = 4;
  spec.dim = 8;
  const IndexStore store = synthetic_store("sample", spec);
  const Manifest manifest = manifest_of(Family::kBlip);
  const SimilaritySides sides =
      load_similarity_sides(store, manifest, "m", spec.root, SimilarityKind::kImageText, {12, 7});
  ASSERT_EQ(sides.rows.size(), 12);
  ASSERT_EQ(sides.cols.size(), 12);
  EXPECT_EQ(sides.rows.scope_items, 60);
  EXPECT_TRUE(sides.rows.sampled());
  EXPECT_EQ(sample_note(sides),
            "sample of 12 of 60 images x 12 of 60 captions, stratified by category, seed 7");
  // Proportions: the same quotas stratified_sample gives for the scope's categories.
  const std::vector<std::string> all = test_support::synthetic_categories(spec);
  std::vector<std::string> keys;
  for (std::size_t i = 0; i < all.size(); ++i) keys.push_back(std::to_string(i));
  std::vector<std::string> expected;
  for (std::size_t i : stratified_sample(all, keys, 12, 7)) expected.push_back(all[i]);
  EXPECT_EQ(count_by(sides.rows.categories), count_by(expected));
  // Grouped by category, and one caption per file: both sides sampled the same files.
  EXPECT_TRUE(std::is_sorted(sides.rows.categories.begin(), sides.rows.categories.end()));
  EXPECT_EQ(sides.rows.labels, sides.cols.labels);
  EXPECT_EQ(sides.rows.vectors.count, 12);

  // Deterministic; another seed picks other items.
  const SimilaritySides again =
      load_similarity_sides(store, manifest, "m", spec.root, SimilarityKind::kImageText, {12, 7});
  EXPECT_EQ(again.rows.labels, sides.rows.labels);
  const SimilaritySides other =
      load_similarity_sides(store, manifest, "m", spec.root, SimilarityKind::kImageText, {12, 8});
  EXPECT_NE(other.rows.labels, sides.rows.labels);

  // The sample's scores are the whole matrix's scores for those items.
  const SimilarityMatrix whole =
      build_similarity_matrix(store, manifest, "m", spec.root, SimilarityKind::kImageText);
  const SimilarityMatrix part = compute_similarity_matrix(sides);
  EXPECT_EQ(part.note, sample_note(sides));
  for (std::size_t r = 0; r < part.row_labels.size(); ++r) {
    const std::size_t wr =
        std::find(whole.row_labels.begin(), whole.row_labels.end(), part.row_labels[r]) -
        whole.row_labels.begin();
    for (std::size_t c = 0; c < part.col_labels.size(); ++c) {
      const std::size_t wc =
          std::find(whole.col_labels.begin(), whole.col_labels.end(), part.col_labels[c]) -
          whole.col_labels.begin();
      ASSERT_LT(wc, whole.col_labels.size());
      EXPECT_EQ(part.scores[r * 12 + c], whole.scores[wr * whole.col_labels.size() + wc]);
    }
  }

  // The CSV's corner says what it is, streamed or not, and the two files are the same.
  write_similarity_csv(sides, out_dir() / "sample_streamed.csv");
  write_similarity_csv(part, out_dir() / "sample_whole.csv");
  EXPECT_EQ(read_bytes(out_dir() / "sample_streamed.csv"),
            read_bytes(out_dir() / "sample_whole.csv"));
  const auto rows = read_csv(out_dir() / "sample_streamed.csv");
  ASSERT_EQ(rows.size(), 13u);
  EXPECT_EQ(rows[0][0], "label (" + sample_note(sides) + ")");

  // A sample at least as large as a side keeps it whole (and says nothing).
  const SimilaritySides big =
      load_similarity_sides(store, manifest, "m", spec.root, SimilarityKind::kImageImage, {60, 7});
  EXPECT_EQ(big.rows.size(), 60);
  EXPECT_EQ(sample_note(big), "");
  EXPECT_THROW(
      load_similarity_sides(store, manifest, "m", spec.root, SimilarityKind::kImageImage, {-1, 0}),
      Error);
}

TEST(SimilarityMatrix, CsvScoresReadAsPrintfWritesThem) {
  // The writer formats with std::to_chars; every value must read as "%.6f" would print it,
  // including halfway cases (2^-7 = 0.0078125), signs of tiny values, and the extremes.
  const std::vector<float> values = {0.0078125f, -0.0078125f, 0.5f,      -1e-9f,    -0.0f,   1.0f,
                                     0.1234565f, 2.5e-7f,     1e30f,     -FLT_MAX,  FLT_MIN, NAN,
                                     -NAN,       INFINITY,    -INFINITY, 0.3333333f};
  SimilarityMatrix m;
  m.row_labels = {"r"};
  m.row_categories = {""};
  for (std::size_t c = 0; c < values.size(); ++c) {
    m.col_labels.push_back("c" + std::to_string(c));
    m.col_categories.push_back("");
  }
  m.scores = values;
  write_similarity_csv(m, out_dir() / "printf.csv");
  const auto rows = read_csv(out_dir() / "printf.csv");
  ASSERT_EQ(rows.size(), 2u);
  ASSERT_EQ(rows[1].size(), values.size() + 1);
  for (std::size_t c = 0; c < values.size(); ++c) {
    char expected[64];
    std::snprintf(expected, sizeof expected, "%.6f", values[c]);
    EXPECT_EQ(rows[1][c + 1], expected) << c;
  }
}
