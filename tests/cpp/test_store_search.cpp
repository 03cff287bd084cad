// IndexStore::search against brute force over the same stored vectors, across segments,
// scopes, deletions, encodings, merges and damage.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <random>
#include <thread>

#include "mmsearch/error.h"
#include "mmsearch/index.h"
#include "random_embeddings.h"
#include "test_dirs.h"

namespace mmsearch {
namespace {
namespace fs = std::filesystem;
using test_support::random_embeddings;

constexpr int kQueries = 32;  // BLIP-2-shaped items: 32 query vectors
constexpr int kDim = 24;

// Items clustered like photos: a few themes, each image a noisy copy of its theme, each query
// vector a noisy copy of its image (so the first stage has something to go on, as in BLIP-2).
std::vector<IndexedFile> make_files(int count, int first, unsigned seed,
                                    const std::string& folder) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  const Embeddings themes = random_embeddings(6, 1, kDim, 99);
  std::vector<IndexedFile> files;
  for (int i = first; i < first + count; ++i) {
    IndexedFile f;
    f.state = {folder + "/img" + std::to_string(i) + ".jpg", 100 + i, 1000 + i,
               "xxh64:" + std::to_string(i)};
    f.category = "theme" + std::to_string(i % 6);
    f.captions.push_back({"caption " + std::to_string(i), ""});
    StoredVectors image;
    image.kind = VectorKind::kImageProj;
    image.rows = kQueries;
    image.cols = kDim;
    std::vector<float> base(kDim);
    for (int d = 0; d < kDim; ++d) base[d] = themes.item(i % 6)[d] + 0.6f * normal(rng);
    for (int q = 0; q < kQueries; ++q) {
      double norm = 0;
      std::vector<float> v(kDim);
      for (int d = 0; d < kDim; ++d) {
        v[d] = base[d] + 0.25f * normal(rng);
        norm += v[d] * v[d];
      }
      for (float& x : v) image.values.push_back(static_cast<float>(x / std::sqrt(norm)));
    }
    f.vectors.push_back(image);
    StoredVectors text;
    text.kind = VectorKind::kTextProj;
    text.caption_index = 0;
    text.rows = 1;
    text.cols = kDim;
    const Embeddings t = random_embeddings(1, 1, kDim, seed * 1000 + i);
    text.values = t.values;
    f.vectors.push_back(text);
    files.push_back(std::move(f));
  }
  return files;
}

// Brute force over load_vectors: the reference.
std::vector<std::string> brute_force(const IndexStore& store, const fs::path& scope,
                                     const SearchRequest& request) {
  const LoadedVectors loaded = store.load_vectors("m@1", scope, request.kind);
  std::vector<std::pair<float, std::string>> scored;
  for (std::int64_t i = 0; i < loaded.embeddings.count; ++i) {
    const std::string& path = loaded.owners[i].path;
    if (std::count(request.excluded_paths.begin(), request.excluded_paths.end(), path)) continue;
    double fused = 0, weights = 0;
    for (const SearchTerm& term : request.terms) {
      Embeddings one;
      one.count = 1;
      one.vectors_per_item = loaded.embeddings.vectors_per_item;
      one.dim = loaded.embeddings.dim;
      one.values.assign(loaded.embeddings.item(i),
                        loaded.embeddings.item(i) + one.vectors_per_item * one.dim);
      fused += term.weight * score_items(term.query, one, term.rule)[0];
      weights += std::fabs(term.weight);
    }
    const float score = static_cast<float>(fused / weights);
    if (score >= request.threshold)
      scored.emplace_back(score, path + "#" + loaded.owners[i].caption);
  }
  std::sort(scored.begin(), scored.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  });
  std::vector<std::string> top;
  for (std::size_t i = 0; i < scored.size() && static_cast<std::int64_t>(i) < request.k; ++i) {
    top.push_back(scored[i].second);
  }
  return top;
}

std::vector<std::string> paths_of(const SearchResult& result) {
  std::vector<std::string> out;
  for (const SearchMatch& m : result.matches) out.push_back(m.owner.path + "#" + m.owner.caption);
  return out;
}

SearchRequest text_request(unsigned seed, int k = 10) {
  SearchRequest request;
  request.kind = VectorKind::kImageProj;
  request.k = k;
  request.terms.push_back({random_embeddings(1, 1, kDim, seed), ScoreRule::kMaxOverQueries, 1.0f});
  return request;
}

class StoreSearch : public ::testing::TestWithParam<VectorEncoding> {
 protected:
  void SetUp() override {
    dir_ = test_support::fresh_test_dir(
        "store_search",
        std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()).substr(0, 40) +
            to_string(GetParam()));
    store_ = std::make_unique<IndexStore>(dir_ / "index.sqlite3");
    store_->set_vector_encoding(GetParam());
    // Several batches: several segments, some merged.
    for (int b = 0; b < 12; ++b) {
      store_->upsert_batch("m@1", make_files(40, b * 40, b + 1, b % 2 ? "/p/odd" : "/p/even"));
    }
  }
  fs::path dir_;
  std::unique_ptr<IndexStore> store_;
};

TEST_P(StoreSearch, MaxOverQueriesEqualsBruteForce) {
  int proven = 0;
  std::int64_t rescored = 0;
  for (unsigned q = 0; q < 20; ++q) {
    SearchRequest request = text_request(500 + q);
    const SearchResult result = store_->search("m@1", "/p", request);
    EXPECT_EQ(result.searched, 480);
    EXPECT_EQ(paths_of(result), brute_force(*store_, "/p", request)) << "query " << q;
    rescored += result.rescored;
    proven += result.proven_exact;
  }
  EXPECT_EQ(proven, 20);
  // The bounds prove the top 10 after re-scoring a fraction of the items.
  EXPECT_LT(rescored, 20 * 480 / 2) << "the first stage pruned too little";
}

TEST_P(StoreSearch, ACapOnRescoringIsReportedAsNotProven) {
  SearchRequest request = text_request(7);
  request.max_rescored = 3;
  const SearchResult capped = store_->search("m@1", "/p", request);
  EXPECT_FALSE(capped.proven_exact);
  EXPECT_EQ(capped.rescored, 3);
  request.exact = true;
  const SearchResult exact = store_->search("m@1", "/p", request);
  EXPECT_TRUE(exact.proven_exact);
  EXPECT_EQ(paths_of(exact), brute_force(*store_, "/p", request));
}

TEST_P(StoreSearch, FusedTermsMeanOfQueriesScopesExclusionsAndThresholds) {
  SearchRequest request = text_request(11, 15);
  request.terms.push_back({random_embeddings(1, 1, kDim, 12), ScoreRule::kMaxOverQueries, -0.5f});
  request.terms.push_back({random_embeddings(1, 1, kDim, 13), ScoreRule::kMeanOfQueries, 0.7f});
  request.excluded_paths = {"/p/odd/img41.jpg", "/p/even/img0.jpg"};
  for (const fs::path scope : {fs::path("/p"), fs::path("/p/odd"), fs::path("/p/odd/img45.jpg")}) {
    const SearchResult result = store_->search("m@1", scope, request);
    EXPECT_EQ(paths_of(result), brute_force(*store_, scope, request)) << scope;
  }
  EXPECT_EQ(store_->search("m@1", "/p/odd", request).searched, 240);
  EXPECT_EQ(store_->search("m@1", "/elsewhere", request).searched, 0);
  request.threshold = 0.1f;
  EXPECT_EQ(paths_of(store_->search("m@1", "/p", request)), brute_force(*store_, "/p", request));
}

TEST_P(StoreSearch, CaptionKindsAndDeletedOrReplacedFiles) {
  SearchRequest request;
  request.kind = VectorKind::kTextProj;
  request.k = 20;
  request.terms.push_back({random_embeddings(1, 1, kDim, 21), ScoreRule::kCls, 1.0f});
  const std::vector<std::string> before = paths_of(store_->search("m@1", "/p", request));
  ASSERT_EQ(before.size(), 20u);
  // Remove the best hit and replace the second: neither old vector may come back.
  const std::string best = before[0].substr(0, before[0].find('#'));
  const std::string second = before[1].substr(0, before[1].find('#'));
  EXPECT_EQ(store_->remove_paths("m@1", {best}), 1);
  std::vector<IndexedFile> replaced = make_files(1, 9999, 77, "/tmp");
  replaced[0].state.path = second;
  store_->upsert_batch("m@1", replaced);
  const SearchResult after = store_->search("m@1", "/p", request);
  EXPECT_EQ(after.searched, 479);
  EXPECT_EQ(paths_of(after), brute_force(*store_, "/p", request));
  for (const std::string& hit : paths_of(after)) EXPECT_NE(hit.substr(0, hit.find('#')), best);
}

INSTANTIATE_TEST_SUITE_P(Encodings, StoreSearch,
                         ::testing::Values(VectorEncoding::kFloat32, VectorEncoding::kFloat16,
                                           VectorEncoding::kInt8),
                         [](const auto& info) { return std::string(to_string(info.param)); });

TEST(StoreSegments, ManySmallBatchesAreMergedIntoFewSegments) {
  const fs::path dir = test_support::fresh_test_dir("store_search", "merge");
  IndexStore store(dir / "index.sqlite3");
  for (int b = 0; b < 100; ++b) store.upsert_batch("m@1", make_files(3, b * 3, b + 1, "/p"));
  std::size_t segments = 0;
  for (const auto& entry : fs::directory_iterator(dir / "index.sqlite3.segments")) {
    segments += entry.path().extension() == ".seg";
  }
  EXPECT_LE(segments, 24u) << "tiered merging keeps the segment count logarithmic";
  const SearchRequest request = text_request(3);
  EXPECT_EQ(store.search("m@1", "/p", request).searched, 300);
  EXPECT_EQ(paths_of(store.search("m@1", "/p", request)), brute_force(store, "/p", request));
  EXPECT_EQ(store.integrity_check(), "ok");
}

TEST(StoreSegments, OrphanSegmentsAreIgnoredAndCleanedUp) {
  const fs::path dir = test_support::fresh_test_dir("store_search", "orphans");
  {
    IndexStore store(dir / "index.sqlite3");
    store.upsert_batch("m@1", make_files(5, 0, 1, "/p"));
  }
  // What a crash between writing a segment and committing its row leaves behind.
  std::ofstream(dir / "index.sqlite3.segments" / "0123456789abcdef.seg") << "half written";
  {
    const IndexStore reader(dir / "index.sqlite3", IndexStore::Mode::kReadOnly);
    EXPECT_EQ(reader.search("m@1", "/p", text_request(1)).searched, 5);
  }
  IndexStore writer(dir / "index.sqlite3");
  EXPECT_FALSE(fs::exists(dir / "index.sqlite3.segments" / "0123456789abcdef.seg"));
  EXPECT_EQ(writer.search("m@1", "/p", text_request(1)).searched, 5);
}

TEST(StoreSegments, ADamagedSegmentIsACorruptStoreNeverGarbage) {
  const fs::path dir = test_support::fresh_test_dir("store_search", "damaged");
  IndexStore store(dir / "index.sqlite3");
  store.upsert_batch("m@1", make_files(50, 0, 1, "/p"));
  fs::path segment;
  for (const auto& entry : fs::directory_iterator(dir / "index.sqlite3.segments"))
    segment = entry.path();
  {
    std::fstream f(segment, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(fs::file_size(segment) / 2));
    f.write("\x7f\x7f\x7f\x7f", 4);
  }
  const IndexStore reader(dir / "index.sqlite3", IndexStore::Mode::kReadOnly);
  SearchRequest request = text_request(1);
  request.exact = true;
  try {
    reader.search("m@1", "/p", request);
    FAIL() << "searched a damaged segment";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kIndex);
    EXPECT_NE(std::string(e.what()).find("corrupt"), std::string::npos) << e.what();
  }
  fs::remove(segment);
  try {
    reader.search("m@1", "/p", request);
    FAIL() << "searched a missing segment";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kIndex);
    EXPECT_NE(std::string(e.what()).find("--rebuild"), std::string::npos) << e.what();
  }
}

// Readers while a writer keeps replacing every file: each replacement empties the previous
// segment, which is deleted after the commit, so a reader whose snapshot began before that
// commit may find its segment gone before it maps it. That is a race, never "damaged" (found
// by the concurrency soak). Bounded by time; a reader error fails the test.
TEST(StoreSegments, ReadersNeverCallASegmentDeletedUnderThemDamaged) {
  const fs::path dir = test_support::fresh_test_dir("store_search", "vanishing_segments");
  const fs::path db = dir / "index.sqlite3";
  {
    IndexStore store(db);
    store.upsert_batch("m@1", make_files(4, 0, 1, "/p"));
  }
  std::atomic<bool> stop{false};
  std::atomic<int> writes{0};
  std::string writer_error;
  std::thread writer([&] {
    try {
      IndexStore store(db);
      for (unsigned round = 2; !stop; ++round) {
        store.upsert_batch("m@1", make_files(4, 0, round, "/p"));
        ++writes;
      }
    } catch (const std::exception& e) {
      writer_error = e.what();
    }
  });
  std::vector<std::string> reader_errors;
  std::int64_t reads = 0;
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(4);
  while (std::chrono::steady_clock::now() < until && reader_errors.size() < 3) {
    try {
      // A fresh reader each time, so nothing is mapped yet (as for each `mmsearch query`).
      const IndexStore reader(db, IndexStore::Mode::kReadOnly);
      SearchRequest request = text_request(static_cast<unsigned>(reads), 4);
      request.exact = true;
      EXPECT_EQ(reader.search("m@1", "/p", request).matches.size(), 4u);
      EXPECT_EQ(reader.load_vectors("m@1", "/p", VectorKind::kTextProj).embeddings.count, 4);
      ++reads;
    } catch (const std::exception& e) {
      reader_errors.push_back(e.what());
    }
  }
  stop = true;
  writer.join();
  EXPECT_EQ(writer_error, "");
  EXPECT_TRUE(reader_errors.empty()) << reader_errors.size() << " failed reads of " << reads
                                     << ", first: " << reader_errors.front();
  EXPECT_GT(writes.load(), 10);
  RecordProperty("reads", static_cast<int>(reads));
  RecordProperty("writes", writes.load());
}

}  // namespace
}  // namespace mmsearch
