// Score matrices streamed row by row (see score_rows.h).
#include "mmsearch/score_rows.h"

#include <string>

#include "mmsearch/error.h"

namespace mmsearch {

void for_each_score_row(const Embeddings& queries, const Embeddings& items, ScoreRule rule,
                        const std::vector<std::int64_t>* rows,
                        const std::function<void(std::int64_t, const std::vector<float>&)>& visit) {
  // Reduce the items once rather than once per query.
  Embeddings reduced;
  const Embeddings* scored = &items;
  if (rule == ScoreRule::kMeanOfQueries && items.vectors_per_item > 1) {
    reduced = mean_of_queries(items);
    scored = &reduced;
  }
  Embeddings one;
  one.count = 1;
  one.vectors_per_item = queries.vectors_per_item;
  one.dim = queries.dim;
  const std::size_t query_size = static_cast<std::size_t>(queries.vectors_per_item) * queries.dim;
  if (queries.values.size() != static_cast<std::size_t>(queries.count) * query_size) {
    throw Error(ErrorKind::kUsage, "score rows: the queries hold " +
                                       std::to_string(queries.values.size()) + " values, not " +
                                       std::to_string(queries.count) + " items of " +
                                       std::to_string(query_size));
  }
  const auto score_row = [&](std::int64_t r) {
    if (r < 0 || r >= queries.count) {
      throw Error(ErrorKind::kUsage,
                  "score rows: row " + std::to_string(r) + " of " + std::to_string(queries.count));
    }
    one.values.assign(queries.item(r), queries.item(r) + query_size);
    visit(r, score_items(one, *scored, rule));
  };
  if (rows == nullptr) {
    for (std::int64_t r = 0; r < queries.count; ++r) score_row(r);
  } else {
    for (std::int64_t r : *rows) score_row(r);
  }
}

}  // namespace mmsearch
