// The approximate-search index: built from a store's segments, searched through
// IndexStore::search, and compared with exact search; what it must never do (return deleted,
// out-of-scope or excluded files, miss what was written after it, read a damaged file).
#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <set>

#include "mmsearch/ann_index.h"
#include "mmsearch/error.h"
#include "mmsearch/index.h"
#include "test_dirs.h"

namespace mmsearch {
namespace {
namespace fs = std::filesystem;

constexpr int kDim = 32;
constexpr int kThemes = 40;

std::vector<float> unit(std::vector<float> v) {
  double norm = 0;
  for (float x : v) norm += static_cast<double>(x) * x;
  for (float& x : v) x = static_cast<float>(x / std::sqrt(norm));
  return v;
}

// Photos of a few dozen themes: each image its theme plus noise; BLIP-2 shaped items have
// `rows` query vectors around the image.
std::vector<IndexedFile> make_files(int count, int first, const std::string& folder, int rows,
                                    unsigned seed) {
  std::mt19937 rng(seed);
  std::mt19937 theme_rng(7);
  std::normal_distribution<float> normal;
  std::vector<std::vector<float>> themes(kThemes, std::vector<float>(kDim));
  for (auto& t : themes)
    for (float& x : t) x = normal(theme_rng);
  std::vector<IndexedFile> files;
  for (int i = first; i < first + count; ++i) {
    IndexedFile f;
    f.state = {folder + "/img" + std::to_string(i) + ".jpg", 100 + i, 1000 + i,
               "xxh64:" + std::to_string(i)};
    std::vector<float> base(kDim);
    for (int d = 0; d < kDim; ++d) base[d] = themes[i % kThemes][d] + 0.7f * normal(rng);
    StoredVectors image;
    image.kind = VectorKind::kImageProj;
    image.rows = rows;
    image.cols = kDim;
    for (int r = 0; r < rows; ++r) {
      std::vector<float> v = base;
      if (rows > 1)
        for (float& x : v) x += 0.3f * normal(rng);
      for (float x : unit(v)) image.values.push_back(x);
    }
    f.vectors.push_back(std::move(image));
    files.push_back(std::move(f));
  }
  return files;
}

SearchRequest text_request(unsigned seed, int rows, int k = 10) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> q(kDim);
  for (float& x : q) x = normal(rng);
  SearchRequest request;
  request.kind = VectorKind::kImageProj;
  request.k = k;
  SearchTerm term;
  term.rule = rows > 1 ? ScoreRule::kMaxOverQueries : ScoreRule::kCls;
  term.query.count = 1;
  term.query.vectors_per_item = 1;
  term.query.dim = kDim;
  term.query.values = unit(q);
  request.terms.push_back(term);
  return request;
}

std::vector<std::string> paths_of(const SearchResult& result) {
  std::vector<std::string> out;
  for (const SearchMatch& m : result.matches) out.push_back(m.owner.path);
  return out;
}

std::size_t files_with_extension(const fs::path& dir, const std::string& extension) {
  std::size_t n = 0;
  for (const auto& entry : fs::directory_iterator(dir)) n += entry.path().extension() == extension;
  return n;
}

class Ann : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    rows_ = GetParam();
    dir_ = test_support::fresh_test_dir(
        "ann", "rows" + std::to_string(rows_) + "_" +
                   ::testing::UnitTest::GetInstance()->current_test_info()->name());
    store_ = std::make_unique<IndexStore>(dir_ / "index.sqlite3");
    store_->set_vector_encoding(VectorEncoding::kFloat32);
    for (int b = 0; b < 6; ++b) {
      store_->upsert_batch("m@1", make_files(500, b * 500, b % 2 ? "/p/odd" : "/p/even", rows_,
                                             static_cast<unsigned>(b + 1)));
    }
  }
  SearchResult exact(const fs::path& scope, SearchRequest request) {
    request.exact = true;
    return store_->search("m@1", scope, request);
  }
  int rows_ = 1;
  fs::path dir_;
  std::unique_ptr<IndexStore> store_;
};

TEST_P(Ann, ProbingEveryListGivesTheExactResult) {
  const AnnInfo info = store_->build_ann("m@1", VectorKind::kImageProj, 16);
  EXPECT_EQ(info.entries, 3000);
  EXPECT_EQ(info.lists, 16);
  EXPECT_EQ(info.uncovered_items, 0);
  for (unsigned seed = 1; seed <= 5; ++seed) {
    SearchRequest request = text_request(seed, rows_);
    request.nprobe = 16;
    const SearchResult approx = store_->search("m@1", "/p", request);
    EXPECT_TRUE(approx.approximate);
    EXPECT_EQ(approx.ann_entries, 3000);
    EXPECT_EQ(approx.searched, 3000);
    const SearchResult truth = exact("/p", request);
    EXPECT_FALSE(truth.approximate) << "--exact never uses the index";
    ASSERT_EQ(paths_of(approx), paths_of(truth)) << "seed " << seed;
    for (std::size_t i = 0; i < truth.matches.size(); ++i) {
      EXPECT_FLOAT_EQ(approx.matches[i].score, truth.matches[i].score) << "scores are exact";
    }
  }
}

TEST_P(Ann, DefaultProbesKeepRecallHigh) {
  store_->build_ann("m@1", VectorKind::kImageProj, 32);
  double recall = 0;
  constexpr int kRuns = 20;
  for (unsigned seed = 1; seed <= kRuns; ++seed) {
    const SearchRequest request = text_request(100 + seed, rows_);
    const SearchResult approx = store_->search("m@1", "/p", request);
    EXPECT_GT(approx.nprobe, 0);
    const auto truth = paths_of(exact("/p", request));
    const std::set<std::string> expected(truth.begin(), truth.end());
    for (const std::string& p : paths_of(approx)) recall += expected.count(p) ? 0.1 : 0.0;
  }
  EXPECT_GE(recall / kRuns, 0.85);
}

TEST_P(Ann, ScopeExclusionDeletionsAndLaterWritesAreHonoured) {
  store_->build_ann("m@1", VectorKind::kImageProj, 16);
  SearchRequest request = text_request(9, rows_);
  request.nprobe = 16;
  // A subfolder: only its files.
  for (const SearchMatch& m : store_->search("m@1", "/p/odd", request).matches) {
    EXPECT_EQ(m.owner.path.rfind("/p/odd/", 0), 0u) << m.owner.path;
  }
  const auto before = paths_of(store_->search("m@1", "/p", request));
  ASSERT_EQ(before.size(), 10u);
  // The best file excluded, then deleted: never returned, and the rest still exact.
  request.excluded_paths = {before[0]};
  auto without = paths_of(store_->search("m@1", "/p", request));
  EXPECT_EQ(std::count(without.begin(), without.end(), before[0]), 0);
  EXPECT_EQ(without, paths_of(exact("/p", request)));
  request.excluded_paths.clear();
  store_->remove_paths("m@1", {before[0]});
  without = paths_of(store_->search("m@1", "/p", request));
  EXPECT_EQ(std::count(without.begin(), without.end(), before[0]), 0);
  EXPECT_EQ(without, paths_of(exact("/p", request)));
  // A file written after the build (a segment it does not cover) is scanned exactly: an image
  // equal to the query is found first.
  IndexedFile twin = make_files(1, 9000, "/p/new", rows_, 3)[0];
  for (int r = 0; r < rows_; ++r) {
    std::copy(request.terms[0].query.values.begin(), request.terms[0].query.values.end(),
              twin.vectors[0].values.begin() + r * kDim);
  }
  store_->upsert_batch("m@1", {twin});
  const SearchResult after = store_->search("m@1", "/p", request);
  EXPECT_TRUE(after.approximate);
  ASSERT_FALSE(after.matches.empty());
  EXPECT_EQ(after.matches[0].owner.path, "/p/new/img9000.jpg");
  EXPECT_EQ(store_->ann_info("m@1", VectorKind::kImageProj)->uncovered_items, 1);
}

INSTANTIATE_TEST_SUITE_P(Shapes, Ann, ::testing::Values(1, 8),
                         [](const auto& info) { return "rows" + std::to_string(info.param); });

TEST(AnnStore, DamagedIndexIsACorruptStore) {
  const fs::path dir = test_support::fresh_test_dir("ann", "damaged");
  IndexStore store(dir / "index.sqlite3");
  store.upsert_batch("m@1", make_files(2000, 0, "/p", 1, 1));
  const AnnInfo info = store.build_ann("m@1", VectorKind::kImageProj, 8);
  const fs::path file = dir / "index.sqlite3.segments" / info.file_name;
  ASSERT_TRUE(fs::exists(file));
  {
    // Inside the codes, past the header, centroids and offsets.
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(fs::file_size(file) * 2 / 3));
    f.write("\x55\x55\x55\x55\x55\x55\x55\x55", 8);
  }
  const IndexStore reader(dir / "index.sqlite3", IndexStore::Mode::kReadOnly);
  SearchRequest request = text_request(1, 1);
  request.nprobe = 8;
  const auto [kind, message] = test_support::error_of([&] { reader.search("m@1", "/p", request); });
  EXPECT_EQ(kind, ErrorKind::kIndex) << message;
  EXPECT_NE(message.find("corrupt"), std::string::npos) << message;
  request.exact = true;
  EXPECT_EQ(reader.search("m@1", "/p", request).matches.size(), 10u)
      << "--exact does not read the index";
}

TEST(AnnStore, FilesComeAndGoWithTheirRows) {
  const fs::path dir = test_support::fresh_test_dir("ann", "lifecycle");
  const fs::path segments = dir / "index.sqlite3.segments";
  {
    IndexStore store(dir / "index.sqlite3");
    store.upsert_batch("m@1", make_files(600, 0, "/p", 1, 1));
    store.upsert_batch("m@2", make_files(600, 0, "/p", 1, 2));
    EXPECT_FALSE(store.refresh_ann("m@1")) << "far below the automatic threshold";
    store.build_ann("m@1", VectorKind::kImageProj, 4);
    store.build_ann("m@1", VectorKind::kImageProj, 4);  // replaces the first
    store.build_ann("m@2", VectorKind::kImageProj, 4);
    EXPECT_EQ(files_with_extension(segments, ".ann"), 2u);
    EXPECT_TRUE(store.drop_ann("m@2", VectorKind::kImageProj));
    EXPECT_FALSE(store.drop_ann("m@2", VectorKind::kImageProj));
    EXPECT_FALSE(store.ann_info("m@2", VectorKind::kImageProj));
    EXPECT_EQ(files_with_extension(segments, ".ann"), 1u);
    store.remove_model("m@1");
    EXPECT_EQ(files_with_extension(segments, ".ann"), 0u);
    store.build_ann("m@2", VectorKind::kImageProj, 4);
  }
  // What a crash between renaming an index and committing its row would leave.
  std::ofstream(segments / "00000000deadbeef.ann") << "not registered";
  IndexStore reopened(dir / "index.sqlite3");
  EXPECT_FALSE(fs::exists(segments / "00000000deadbeef.ann"));
  EXPECT_EQ(files_with_extension(segments, ".ann"), 1u);
  EXPECT_TRUE(reopened.ann_info("m@2", VectorKind::kImageProj));
  const auto [kind, message] =
      test_support::error_of([&] { reopened.build_ann("m@2", VectorKind::kImageProj, 5000); });
  EXPECT_EQ(kind, ErrorKind::kUsage) << message;
  EXPECT_NE(message.find("--lists"), std::string::npos) << message;
}

TEST(AnnStore, SamplesAreRepeatableAndCarryVectors) {
  const fs::path dir = test_support::fresh_test_dir("ann", "sample");
  IndexStore store(dir / "index.sqlite3");
  store.upsert_batch("m@1", make_files(300, 0, "/p", 1, 1));
  const auto a = store.sample_files("m@1", 20, 5);
  const auto b = store.sample_files("m@1", 20, 5);
  ASSERT_EQ(a.size(), 20u);
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].state.path, b[i].state.path);
    ASSERT_EQ(a[i].vectors.size(), 1u);
    EXPECT_EQ(a[i].vectors[0].values.size(), static_cast<std::size_t>(kDim));
  }
  EXPECT_NE(store.sample_files("m@1", 20, 6)[0].state.path, a[0].state.path);
}

}  // namespace
}  // namespace mmsearch
