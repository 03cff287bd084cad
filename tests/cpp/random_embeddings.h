// Deterministic random unit vectors for the search tests and benchmark.
#pragma once

#include <cstdint>
#include <random>

#include "mmsearch/search.h"

namespace mmsearch::test_support {

// `count` items of `per_item` L2-normalised vectors of `dim` floats, drawn from N(0,1) with a
// fixed seed.
inline Embeddings random_embeddings(std::int64_t count, int per_item, int dim, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  Embeddings e;
  e.count = count;
  e.vectors_per_item = per_item;
  e.dim = dim;
  e.values.resize(static_cast<std::size_t>(count) * per_item * dim);
  for (float& v : e.values) v = normal(rng);
  l2_normalize(e);
  return e;
}

}  // namespace mmsearch::test_support
