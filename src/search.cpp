#include "mmsearch/search.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <queue>
#include <string_view>
#include <unordered_set>

#include "mmsearch/error.h"
#include "mmsearch/score_rows.h"

namespace mmsearch {
namespace {

// The scan is memory-bound: one pass over count * dim floats. Sixteen independent partial sums
// let the compiler vectorise the loop without -ffast-math (each lane accumulates its own sum,
// so no reassociation is needed), and target_clones picks AVX2+FMA at load time on machines
// that have it while the build stays portable x86-64.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MMSEARCH_MULTIVERSION __attribute__((target_clones("avx2,fma", "default")))
#else
#define MMSEARCH_MULTIVERSION
#endif

#if defined(__GNUC__)
#define MMSEARCH_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define MMSEARCH_ALWAYS_INLINE inline
#endif

// The one dot-product kernel. Always inlined into the multiversioned scans below, so that each
// of them is compiled for every target in MMSEARCH_MULTIVERSION.
MMSEARCH_ALWAYS_INLINE float dot_kernel(const float* a, const float* b, int n) {
  constexpr int kLanes = 16;
  float partial[kLanes] = {};
  int i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int lane = 0; lane < kLanes; ++lane) partial[lane] += a[i + lane] * b[i + lane];
  }
  float sum = 0.0f;
  for (; i < n; ++i) sum += a[i] * b[i];
  for (int lane = 0; lane < kLanes; ++lane) sum += partial[lane];
  return sum;
}

MMSEARCH_MULTIVERSION
float dot(const float* a, const float* b, int n) { return dot_kernel(a, b, n); }

// scores[i] = rows[i * stride] . query for i < count: a strided matrix-vector product.
MMSEARCH_MULTIVERSION
void gemv_strided(const float* rows, std::int64_t count, std::int64_t stride, const float* query,
                  int dim, float* scores) {
  for (std::int64_t i = 0; i < count; ++i) scores[i] = dot_kernel(rows + i * stride, query, dim);
}

// scores[i] = max over item i's vectors v and the query's vectors q of v . q. The max is taken
// as the dots are made, in one pass over the items (no per-vector score buffer to write and
// read back).
MMSEARCH_MULTIVERSION
void max_over_pairs(const float* items, std::int64_t count, int per_item, const float* query,
                    int query_rows, int dim, float* scores) {
  for (std::int64_t i = 0; i < count; ++i) {
    float best = -std::numeric_limits<float>::infinity();
    for (int v = 0; v < per_item; ++v) {
      const float* row = items + (i * per_item + v) * static_cast<std::int64_t>(dim);
      for (int q = 0; q < query_rows; ++q) {
        best = std::max(best, dot_kernel(row, query + static_cast<std::int64_t>(q) * dim, dim));
      }
    }
    scores[i] = best;
  }
}

void check_shape(const Embeddings& e, const char* what) {
  if (e.count < 0 || e.vectors_per_item <= 0 || e.dim <= 0) {
    if (e.count == 0 && e.values.empty()) return;
    throw Error(ErrorKind::kUsage, std::string(what) + ": invalid embeddings shape");
  }
  const auto expected = static_cast<std::size_t>(e.count) * e.vectors_per_item * e.dim;
  if (e.values.size() != expected) {
    throw Error(ErrorKind::kUsage, std::string(what) + ": " + std::to_string(e.values.size()) +
                                       " values for " + std::to_string(e.count) + " x " +
                                       std::to_string(e.vectors_per_item) + " x " +
                                       std::to_string(e.dim));
  }
}

void normalize_vector(float* v, int dim) {
  const float norm = std::sqrt(dot(v, v, dim));
  if (norm > 0.0f) {
    const float inv = 1.0f / norm;
    for (int d = 0; d < dim; ++d) v[d] *= inv;
  }
}

}  // namespace

void l2_normalize(Embeddings& embeddings) {
  check_shape(embeddings, "l2_normalize");
  const std::int64_t rows = embeddings.count * embeddings.vectors_per_item;
  for (std::int64_t r = 0; r < rows; ++r) {
    normalize_vector(embeddings.values.data() + r * embeddings.dim, embeddings.dim);
  }
}

Embeddings mean_of_queries(const Embeddings& embeddings) {
  check_shape(embeddings, "mean_of_queries");
  Embeddings means;
  means.count = embeddings.count;
  means.vectors_per_item = 1;
  means.dim = embeddings.dim;
  means.values.assign(static_cast<std::size_t>(means.count) * means.dim, 0.0f);
  for (std::int64_t i = 0; i < embeddings.count; ++i) {
    const float* item = embeddings.item(i);
    float* mean = means.item(i);
    for (int q = 0; q < embeddings.vectors_per_item; ++q) {
      const float* v = item + static_cast<std::int64_t>(q) * embeddings.dim;
      for (int d = 0; d < embeddings.dim; ++d) mean[d] += v[d];
    }
    // Dividing by the count before normalising would change nothing: only the direction counts.
    normalize_vector(mean, means.dim);
  }
  return means;
}

std::vector<float> score_items(const Embeddings& query, const Embeddings& items, ScoreRule rule) {
  check_shape(query, "query");
  check_shape(items, "items");
  if (query.count != 1) {
    throw Error(ErrorKind::kUsage,
                "score_items: the query must be one item, got " + std::to_string(query.count));
  }
  std::vector<float> scores(static_cast<std::size_t>(items.count), 0.0f);
  if (items.count == 0) return scores;
  if (query.dim != items.dim) {
    throw Error(ErrorKind::kUsage, "query vectors have " + std::to_string(query.dim) +
                                       " dimensions, the stored ones " + std::to_string(items.dim) +
                                       " (were they made by another model?)");
  }
  const int dim = items.dim;
  const std::int64_t item_stride = static_cast<std::int64_t>(items.vectors_per_item) * dim;
  switch (rule) {
    case ScoreRule::kCls:
      gemv_strided(items.values.data(), items.count, item_stride, query.values.data(), dim,
                   scores.data());
      return scores;
    case ScoreRule::kMeanOfQueries: {
      const Embeddings query_mean = mean_of_queries(query);
      if (items.vectors_per_item == 1) {
        // Taken as already reduced by mean_of_queries() (or a one-vector model): plain gemv.
        gemv_strided(items.values.data(), items.count, dim, query_mean.values.data(), dim,
                     scores.data());
      } else {
        const Embeddings item_means = mean_of_queries(items);
        gemv_strided(item_means.values.data(), items.count, dim, query_mean.values.data(), dim,
                     scores.data());
      }
      return scores;
    }
    case ScoreRule::kMaxOverQueries:
      max_over_pairs(items.values.data(), items.count, items.vectors_per_item, query.values.data(),
                     query.vectors_per_item, dim, scores.data());
      return scores;
  }
  throw Error(ErrorKind::kUsage, "unknown score rule");
}

std::vector<float> score_matrix(const Embeddings& queries, const Embeddings& items,
                                ScoreRule rule) {
  check_shape(queries, "queries");
  check_shape(items, "items");
  std::vector<float> matrix(static_cast<std::size_t>(queries.count * items.count));
  if (queries.count == 0 || items.count == 0) return matrix;
  // One row at a time, as the streamed callers score them: the same numbers bit for bit.
  for_each_score_row(queries, items, rule, nullptr,
                     [&](std::int64_t r, const std::vector<float>& row) {
                       std::copy(row.begin(), row.end(), matrix.begin() + r * items.count);
                     });
  return matrix;
}

std::vector<float> fuse_scores(const std::vector<WeightedScores>& terms) {
  if (terms.empty()) throw Error(ErrorKind::kUsage, "no query terms to combine");
  double weight_sum = 0.0;
  for (const WeightedScores& term : terms) {
    if (!std::isfinite(term.weight)) {
      throw Error(ErrorKind::kUsage, "query term weight is not a finite number");
    }
    if (term.scores.size() != terms.front().scores.size()) {
      throw Error(ErrorKind::kUsage, "query terms were scored over different item sets");
    }
    weight_sum += std::fabs(term.weight);
  }
  if (weight_sum == 0.0) throw Error(ErrorKind::kUsage, "all query term weights are zero");
  std::vector<float> combined(terms.front().scores.size(), 0.0f);
  for (const WeightedScores& term : terms) {
    const float w = static_cast<float>(term.weight / weight_sum);
    for (std::size_t i = 0; i < combined.size(); ++i) combined[i] += w * term.scores[i];
  }
  return combined;
}

ParsedTerm parse_weighted_term(const std::string& term) {
  ParsedTerm parsed{term, 1.0f};
  const std::size_t colon = term.find(':');
  if (colon != std::string::npos) {
    std::string_view prefix(term.data(), colon);
    float sign = 1.0f;
    if (!prefix.empty() && (prefix.front() == '-' || prefix.front() == '+')) {
      sign = prefix.front() == '-' ? -1.0f : 1.0f;
      prefix.remove_prefix(1);
    }
    bool numeric = !prefix.empty();
    bool seen_dot = false, seen_digit = false;
    for (char c : prefix) {
      if (c == '.' && !seen_dot) {
        seen_dot = true;
      } else if (c >= '0' && c <= '9') {
        seen_digit = true;
      } else {
        numeric = false;
        break;
      }
    }
    const bool bare_sign = prefix.empty() && colon == 1;  // "-:text" or "+:text"
    if ((numeric && seen_digit) || bare_sign) {
      const float magnitude = bare_sign ? 1.0f : std::strtof(std::string(prefix).c_str(), nullptr);
      parsed.weight = sign * magnitude;
      parsed.text = term.substr(colon + 1);
      return parsed;
    }
  }
  if (term.size() > 1 && term.front() == '-') {
    parsed.weight = -1.0f;
    parsed.text = term.substr(1);
  }
  return parsed;
}

std::vector<SearchHit> top_k(const std::vector<float>& scores, std::int64_t k, float threshold,
                             const std::vector<std::int64_t>& excluded) {
  if (k < 0) throw Error(ErrorKind::kUsage, "k must not be negative");
  std::vector<SearchHit> hits;
  if (k == 0) return hits;
  const std::unordered_set<std::int64_t> skip(excluded.begin(), excluded.end());
  // "a before b" = a ranks higher: greater score, then lower index.
  const auto better = [](const SearchHit& a, const SearchHit& b) {
    return a.score > b.score || (a.score == b.score && a.index < b.index);
  };
  // A heap of the k best so far whose top is the worst of them.
  std::priority_queue<SearchHit, std::vector<SearchHit>, decltype(better)> heap(better);
  const auto n = static_cast<std::int64_t>(scores.size());
  for (std::int64_t i = 0; i < n; ++i) {
    const float s = scores[i];
    if (std::isnan(s) || s < threshold) continue;
    if (!skip.empty() && skip.count(i) != 0) continue;
    const SearchHit hit{i, s};
    if (static_cast<std::int64_t>(heap.size()) < k) {
      heap.push(hit);
    } else if (better(hit, heap.top())) {
      heap.pop();
      heap.push(hit);
    }
  }
  hits.reserve(heap.size());
  while (!heap.empty()) {
    hits.push_back(heap.top());
    heap.pop();
  }
  std::reverse(hits.begin(), hits.end());
  return hits;
}

}  // namespace mmsearch
