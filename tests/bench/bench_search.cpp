// Brute-force scan speed of the score rules (prints numbers; asserts nothing).
//   bench_search [items=100000] [dim=256] [repeats=20]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <opencv2/core.hpp>
#include <random>

#include "../cpp/random_embeddings.h"
#include "mmsearch/search.h"

using namespace mmsearch;
using mmsearch::test_support::random_embeddings;
using Clock = std::chrono::steady_clock;

namespace {

template <typename F>
double best_ms(int repeats, F&& f) {
  double best = std::numeric_limits<double>::infinity();
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = Clock::now();
    f();
    best = std::min(best, std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  return best;
}

volatile float sink = 0;

}  // namespace

int main(int argc, char** argv) {
  const std::int64_t items = argc > 1 ? std::atoll(argv[1]) : 100000;
  const int dim = argc > 2 ? std::atoi(argv[2]) : 256;
  const int repeats = argc > 3 ? std::atoi(argv[3]) : 20;

  const Embeddings cls = random_embeddings(items, 1, dim, 1);
  const Embeddings text = random_embeddings(1, 1, dim, 2);
  const double gb = static_cast<double>(cls.values.size()) * 4 / 1e9;

  const double cls_ms =
      best_ms(repeats, [&] { sink = score_items(text, cls, ScoreRule::kCls)[0]; });
  std::printf("cls gemv          %lld x %d: %8.2f ms  (%.1f GB/s, %.1f M items/s)\n",
              static_cast<long long>(items), dim, cls_ms, gb / (cls_ms / 1e3),
              items / cls_ms / 1e3);

  // The same product through OpenCV's gemm, for comparison.
  const cv::Mat matrix(static_cast<int>(items), dim, CV_32F, const_cast<float*>(cls.values.data()));
  const cv::Mat query(dim, 1, CV_32F, const_cast<float*>(text.values.data()));
  cv::Mat out;
  const double cv_ms = best_ms(repeats, [&] {
    cv::gemm(matrix, query, 1.0, cv::noArray(), 0.0, out);
    sink = out.at<float>(0);
  });
  std::printf("cv::gemm          %lld x %d: %8.2f ms\n", static_cast<long long>(items), dim, cv_ms);

  const Embeddings image_query = random_embeddings(1, 32, dim, 3);
  const double mean_ms =
      best_ms(repeats, [&] { sink = score_items(image_query, cls, ScoreRule::kMeanOfQueries)[0]; });
  std::printf("mean-of-queries   %lld pre-reduced items: %8.2f ms\n", static_cast<long long>(items),
              mean_ms);

  std::vector<float> scores = score_items(text, cls, ScoreRule::kCls);
  const double topk_ms = best_ms(repeats, [&] {
    sink = top_k(scores, 10, -std::numeric_limits<float>::infinity(), {5, 7}).front().score;
  });
  std::printf("top_k(10)         %lld scores: %8.2f ms\n", static_cast<long long>(items), topk_ms);

  // BLIP-2: 32 query vectors per image (the stored image_proj), text -> image max-over-queries.
  const std::int64_t blip2_items = std::min<std::int64_t>(items, 20000);
  const Embeddings queries = random_embeddings(blip2_items, 32, dim, 4);
  const double max_ms = best_ms(std::max(1, repeats / 4), [&] {
    sink = score_items(text, queries, ScoreRule::kMaxOverQueries)[0];
  });
  std::printf("max-over-queries  %lld x 32 x %d: %8.2f ms  (%.1f ms per 100k items)\n",
              static_cast<long long>(blip2_items), dim, max_ms, max_ms * 100000.0 / blip2_items);
  const double reduce_ms = best_ms(1, [&] { sink = mean_of_queries(queries).values[0]; });
  std::printf("mean_of_queries() %lld x 32 x %d: %8.2f ms (once per load)\n",
              static_cast<long long>(blip2_items), dim, reduce_ms);
  return 0;
}
