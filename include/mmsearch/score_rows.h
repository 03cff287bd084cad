// A score matrix one row at a time: what simmatrix's streamed CSV and eval need to score
// N x M pairs in O(N + M) memory instead of holding the N x M matrix (score_matrix() in
// search.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "mmsearch/search.h"

namespace mmsearch {

// Calls visit(r, scores) for each query item r of `*rows` in the order given (every item of
// `queries` in order when `rows` is null), with r's scores against every item of `items` under
// `rule`: exactly row r of score_matrix(queries, items, rule), bit for bit. Only one row is
// held at a time. Items are reduced once (mean_of_queries) when the rule needs it, as
// score_matrix (built on this) does. Throws Error(kUsage) on inconsistent shapes or a row out of range.
void for_each_score_row(const Embeddings& queries, const Embeddings& items, ScoreRule rule,
                        const std::vector<std::int64_t>* rows,
                        const std::function<void(std::int64_t, const std::vector<float>&)>& visit);

}  // namespace mmsearch
