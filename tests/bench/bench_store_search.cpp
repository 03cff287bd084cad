// IndexStore::search in-process, without the model: how the search phase scales with the store.
// Builds (or reuses) a store of N synthetic items shaped like BLIP (1 x 256) or BLIP-2
// (32 x 256), written in batches of 4096 through upsert_batch, then times searches with random
// unit queries and prints each phase. The end-to-end process numbers come from
// tests/bench/bench_query.py.
//
//   build/tests/bench_store_search ITEMS VECTORS_PER_ITEM DIR [--build] [--encoding fp16]
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

#include "mmsearch/index.h"

using namespace mmsearch;

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void normalise(float* v, int dim) {
  double norm = 0;
  for (int d = 0; d < dim; ++d) norm += double(v[d]) * v[d];
  for (int d = 0; d < dim; ++d) v[d] = static_cast<float>(v[d] / std::sqrt(norm));
}

// Items grouped around 200 themes; BLIP-2's 32 vectors are noisy copies of their image.
void build(const std::string& dir, int items, int per_item, VectorEncoding encoding) {
  IndexStore store(dir + "/index.sqlite3");
  store.set_vector_encoding(encoding);
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  constexpr int kDim = 256;
  std::vector<float> themes(200 * kDim);
  for (float& x : themes) x = normal(rng);
  const auto started = std::chrono::steady_clock::now();
  for (int start = 0; start < items; start += 4096) {
    std::vector<IndexedFile> batch;
    for (int i = start; i < std::min(items, start + 4096); ++i) {
      IndexedFile f;
      f.state = {"/bench/img/" + std::to_string(i) + ".jpg", 1, 1, ""};
      StoredVectors v;
      v.kind = VectorKind::kImageProj;
      v.rows = per_item;
      v.cols = kDim;
      v.values.resize(static_cast<std::size_t>(per_item) * kDim);
      std::vector<float> base(kDim);
      for (int d = 0; d < kDim; ++d) base[d] = themes[(i % 200) * kDim + d] + 0.7f * normal(rng);
      for (int q = 0; q < per_item; ++q) {
        float* row = v.values.data() + q * kDim;
        for (int d = 0; d < kDim; ++d) row[d] = base[d] + (per_item > 1 ? normal(rng) : 0.0f);
        normalise(row, kDim);
      }
      f.vectors.push_back(std::move(v));
      batch.push_back(std::move(f));
    }
    store.upsert_batch("bench@1", batch);
  }
  std::printf("built %d items x %d x 256 (%s) in %.1f s: %.0f items/s\n", items, per_item,
              to_string(encoding), seconds_since(started), items / seconds_since(started));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s ITEMS VECTORS_PER_ITEM DIR [--build] [--encoding E]\n",
                 argv[0]);
    return 2;
  }
  const int items = std::atoi(argv[1]);
  const int per_item = std::atoi(argv[2]);
  const std::string dir = argv[3];
  bool do_build = false;
  VectorEncoding encoding = VectorEncoding::kFloat16;
  for (int i = 4; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--build") do_build = true;
    if (arg == "--encoding" && i + 1 < argc) encoding = vector_encoding_from_string(argv[++i]);
  }
  if (do_build) build(dir, items, per_item, encoding);
  const auto opened = std::chrono::steady_clock::now();
  const IndexStore store(dir + "/index.sqlite3", IndexStore::Mode::kReadOnly);
  std::printf("open %.2f ms\n", seconds_since(opened) * 1e3);
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  std::printf("%-6s %10s %10s %10s %10s %10s %10s %6s\n", "query", "total ms", "select", "scan",
              "rescore", "searched", "rescored", "proven");
  const int queries = std::getenv("BENCH_QUERIES") ? std::atoi(std::getenv("BENCH_QUERIES")) : 8;
  for (int q = 0; q < queries; ++q) {
    SearchRequest request;
    request.kind = VectorKind::kImageProj;
    request.k = 10;
    SearchTerm term;
    term.query.count = 1;
    term.query.vectors_per_item = 1;
    term.query.dim = 256;
    term.query.values.resize(256);
    for (float& x : term.query.values) x = normal(rng);
    normalise(term.query.values.data(), 256);
    term.rule = per_item > 1 ? ScoreRule::kMaxOverQueries : ScoreRule::kCls;
    request.terms.push_back(term);
    const auto started = std::chrono::steady_clock::now();
    const SearchResult result = store.search("bench@1", "/bench", request);
    std::printf("%-6d %10.1f %10.1f %10.1f %10.1f %10lld %10lld %6d\n", q,
                seconds_since(started) * 1e3, result.select_ms, result.scan_ms, result.rescore_ms,
                static_cast<long long>(result.searched), static_cast<long long>(result.rescored),
                result.proven_exact);
  }
  return 0;
}
